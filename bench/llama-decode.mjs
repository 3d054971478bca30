// Decode throughput of llama.cpp (node-llama-cpp, pinned in tests/npm) for bench-local.sh.
//   node llama-decode.mjs MODEL.gguf THREADS BATCH NEW
// BATCH sequences of a 1-token prompt each decode NEW tokens greedily, all at once in one
// context (llama.cpp batches parallel sequences into one decode per step).  Prints
// "tokens seconds tokens/s cpu_seconds" (process CPU time of the decode loop, all threads).
import { getLlama } from "node-llama-cpp";

const [modelPath, threads, batch, nNew] = process.argv.slice(2).map((a, i) => (i ? Number(a) : a));
const llama = await getLlama({ gpu: false, build: "never", logLevel: "error" });
const model = await llama.loadModel({ modelPath });
const ctx = await model.createContext({ contextSize: batch * (nNew + 8), sequences: batch, threads,
  batchSize: Math.max(batch, 64) });
const seqs = Array.from({ length: batch }, () => ctx.getSequence());
// warm-up: the first evaluation of each sequence (its prompt) is not timed
const gens = seqs.map((s, i) => s.evaluate([1 + (i % 100)], { temperature: 0 })[Symbol.asyncIterator]());
await Promise.all(gens.map((g) => g.next()));
const t0 = performance.now(), c0 = process.cpuUsage();
let made = 0;
await Promise.all(gens.map(async (g) => {
  for (let k = 1; k < nNew; k++) {
    const r = await g.next();
    if (r.done) break;
    made++;
  }
}));
const s = (performance.now() - t0) / 1000, cu = process.cpuUsage(c0);
console.log(`${made} ${s.toFixed(4)} ${(made / s).toFixed(2)} ${((cu.user + cu.system) / 1e6).toFixed(4)}`);
await ctx.dispose();
await model.dispose();
