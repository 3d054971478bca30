// Reference ids: the Hugging Face tokenizers.js implementation on a tokenizer.json.
//   node tok-oracle.mjs TOKENIZER.json [--special] < corpus.jsonl > ids.jsonl
// One JSON string per input line; one JSON array of ids per output line.
import { readFileSync } from "node:fs";
import { Tokenizer } from "@huggingface/tokenizers";

const [path, flag] = process.argv.slice(2);
const tok = new Tokenizer(JSON.parse(readFileSync(path, "utf8")), {});
const lines = readFileSync(0, "utf8").split("\n").filter((l) => l.length);
const out = lines.map((l) =>
  JSON.stringify(tok.encode(JSON.parse(l), { add_special_tokens: flag === "--special" }).ids));
process.stdout.write(out.join("\n") + "\n");
