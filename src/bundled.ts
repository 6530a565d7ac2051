/**
 * Files shipped with the package (the `files` list in package.json): the bundled demo model and the
 * bundled texts. Paths resolve the same from src/ (tests, tsx) and dist/ (the built package).
 */
import { fileURLToPath } from 'node:url';

/** The bundled model: Karpathy's stories260K (a 260K-parameter TinyStories Llama, MIT), models/README.md. */
export const BUNDLED_MODEL = fileURLToPath(new URL('../models/stories260k', import.meta.url));
