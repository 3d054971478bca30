// Real llama.cpp (node-llama-cpp) as the oracle for GGUF files we write.
//   node llama-oracle.mjs MODEL.gguf [--lora ADAPTER.gguf] [--steps N] < prompts.jsonl
// For each JSON string prompt prints {"ids": [...tokenize...], "greedy": [...N greedy ids...]}.
import { readFileSync } from "node:fs";
import { getLlama } from "node-llama-cpp";

const args = process.argv.slice(2);
const modelPath = args[0];
const opt = (name, dflt) => { const i = args.indexOf(name); return i > 0 ? args[i + 1] : dflt; };
const lora = opt("--lora", null);
const steps = Number(opt("--steps", "8"));
const llama = await getLlama({ gpu: false, build: "never", logLevel: "error" });
const model = await llama.loadModel({ modelPath });
const prompts = readFileSync(0, "utf8").split("\n").filter((l) => l.length).map((l) => JSON.parse(l));
for (const p of prompts) {
  const ctx = await model.createContext({ contextSize: 256, batchSize: 256, threads: 1,
    ...(lora ? { lora: { adapters: [{ filePath: lora, scale: 1 }] } } : {}) });
  const seq = ctx.getSequence();
  const ids = model.tokenize(p, true);
  const greedy = [];
  for await (const t of seq.evaluate(ids, { temperature: 0 })) {
    greedy.push(t);
    if (greedy.length >= steps) break;
  }
  console.log(JSON.stringify({ ids: Array.from(ids), greedy }));
  await ctx.dispose();
}
await model.dispose();
