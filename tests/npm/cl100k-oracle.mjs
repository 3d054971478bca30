// Reference cl100k_base ids: OpenAI's tiktoken (its Rust core compiled to WebAssembly, npm
// package tiktoken) with its own bundled ranks.
//   node cl100k-oracle.mjs < corpus.jsonl > ids.jsonl
// One JSON string per input line; one JSON array of ids per output line.  Special-token text
// is encoded as ordinary text, as cl-reward counts it.
import { readFileSync } from "node:fs";
import { get_encoding } from "tiktoken";

const enc = get_encoding("cl100k_base");
const lines = readFileSync(0, "utf8").split("\n").filter((l) => l.length);
const out = lines.map((l) => JSON.stringify(Array.from(enc.encode(JSON.parse(l), [], []))));
enc.free();
process.stdout.write(out.join("\n") + "\n");
