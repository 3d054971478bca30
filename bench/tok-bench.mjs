// tokenizers.js encode throughput, the peer of `tok bench`: node tok-bench.mjs TOKENIZER TEXT
// Prints "<MB/s> MB/s <tokens/s> tokens/s <tokens> tokens" after ~2 CPU seconds of repeated
// encoding; rates are per CPU second of this process, as `tok bench` measures them.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(join(here, "../tests/npm/package.json"));
const { Tokenizer } = require("@huggingface/tokenizers");
const [tokPath, textPath] = process.argv.slice(2);
const tok = new Tokenizer(JSON.parse(readFileSync(tokPath, "utf8")), {});
const text = readFileSync(textPath, "utf8");
const bytes = Buffer.byteLength(text);
let n = 0, ntok = 0, ids = [];
const cpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1e6; };
const t0 = cpu();
let secs = 0;
while (secs < 2) {
  ids = tok.encode(text, { add_special_tokens: false }).ids;
  n += bytes;
  ntok += ids.length;
  secs = cpu() - t0;
}
console.log(`${(n / secs / 1e6).toFixed(1)} MB/s ${(ntok / secs).toFixed(0)} tokens/s ${ids.length} tokens`);
