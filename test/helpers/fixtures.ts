/** Paths and golden data of the bundled fixtures (test/fixtures/README.md has their provenance). */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const FIXTURES_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures');
export const FIXTURE_NAMES = ['stories260k', 'tiny-gpt2-random', 'gpt2-random-f16'] as const;
export type FixtureName = (typeof FIXTURE_NAMES)[number];

export function fixtureDir(name: FixtureName): string {
  return path.join(FIXTURES_DIR, name);
}

export interface GoldenPrompt {
  readonly input_ids: number[];
  readonly greedy_continuation: number[];
  readonly last_logits: number[];
  readonly all_positions_argmax: number[];
}

export function golden(name: FixtureName): Record<string, GoldenPrompt> {
  const g = JSON.parse(fs.readFileSync(path.join(fixtureDir(name), 'golden.json'), 'utf8'));
  return g.prompts;
}
