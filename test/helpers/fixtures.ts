/** Paths and golden data of the bundled fixtures (test/fixtures/README.md has their provenance). */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BUNDLED_MODEL } from '../../src/bundled.js';

export const FIXTURES_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures');
export const FIXTURE_NAMES = ['stories260k', 'tiny-gpt2-random', 'gpt2-random-f16', 'qwen2-random', 'qwen3-random', 'mistral-random', 'opt-random'] as const;
export type FixtureName = (typeof FIXTURE_NAMES)[number];

/** The model directory of a fixture (stories260k is the package's bundled model, models/stories260k). */
export function fixtureDir(name: FixtureName): string {
  return name === 'stories260k' ? BUNDLED_MODEL : path.join(FIXTURES_DIR, name);
}

export interface GoldenPrompt {
  readonly input_ids: number[];
  readonly greedy_continuation: number[];
  readonly last_logits: number[];
  readonly all_positions_argmax: number[];
}

export function golden(name: FixtureName): Record<string, GoldenPrompt> {
  const g = JSON.parse(fs.readFileSync(path.join(FIXTURES_DIR, name, 'golden.json'), 'utf8'));
  return g.prompts;
}
