/** Loading the model a conversation command runs: the ANN, or a spiking model (saved or converted now). */
import { convertModelToSpiking, createCalibrationData } from '../convert/api.js';
import { assertSameModel, loadSnnModel } from '../convert/snn-io.js';
import type { CausalLM } from '../nn/model.js';
import type { SpikingLM } from '../snn/model.js';
import type { FlagValues } from './args.js';
import type { CliIO } from './command.js';
import { loadModelFromFlags, resolveModelDir } from './model-dir.js';
import { ProgressBar } from './progress.js';

export interface SessionModels {
  readonly ann: CausalLM;
  readonly snn?: SpikingLM;
  readonly tokenizer: import('../nn/tokenizer.js').TextTokenizer;
  readonly dir: string;
}

/** `--snn` alone converts the ANN now (calibrated, --timesteps); `--snn DIR` loads a converted model. */
export async function loadSessionModels(flags: FlagValues, io: CliIO, defaultT = 16): Promise<SessionModels> {
  const snnDir = typeof flags.snn === 'string' ? resolveModelDir(flags.snn, '--snn') : undefined;
  const { model: ann, tokenizer, dir } = await loadModelFromFlags(flags, io);
  const T = (flags.timesteps as number | undefined) ?? defaultT;
  if (snnDir) {
    const loaded = loadSnnModel(snnDir, { backend: ann.backend });
    assertSameModel(ann, loaded.ann, dir, snnDir);
    return { ann, snn: flags.timesteps !== undefined ? loaded.snn.withTimesteps(T) : loaded.snn, tokenizer, dir };
  }
  if (flags.snn === true) {
    const bar = new ProgressBar(io, 'converting');
    const { snn } = convertModelToSpiking(ann, createCalibrationData(tokenizer), { timesteps: T, onProgress: (d, t) => bar.update(d, t) });
    return { ann, snn, tokenizer, dir };
  }
  return { ann, tokenizer, dir };
}
