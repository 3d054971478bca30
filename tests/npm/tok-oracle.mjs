// Reference ids: the Hugging Face tokenizers.js implementation on a tokenizer.json.
//   node tok-oracle.mjs TOKENIZER.json [--special|--both] < corpus.jsonl > ids.jsonl
// One JSON string per input line; one JSON array of ids per output line (--both: two lines,
// without and then with the post-processor's specials).
import { readFileSync } from "node:fs";
import { Tokenizer } from "@huggingface/tokenizers";

const [path, flag] = process.argv.slice(2);
const tok = new Tokenizer(JSON.parse(readFileSync(path, "utf8")), {});
const lines = readFileSync(0, "utf8").split("\n").filter((l) => l.length);
const enc = (text, special) => JSON.stringify(tok.encode(text, { add_special_tokens: special }).ids);
const out = lines.map((l) => {
  const text = JSON.parse(l);
  return flag === "--both" ? enc(text, false) + "\n" + enc(text, true) : enc(text, flag === "--special");
});
process.stdout.write(out.join("\n") + "\n");
