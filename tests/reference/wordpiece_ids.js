// WordPiece ids from Hugging Face's own tokenizer library (npm `tokenizers`, the Rust crate's Node binding), set up
// exactly as all-MiniLM-L6-v2's tokenizer.json sets it up: BertNormalizer (clean text, CJK characters split, lower-case,
// accents stripped because lower-casing is on), BertPreTokenizer, WordPiece ("##" continuations, [UNK] for a word of
// over 100 characters), and the five special tokens kept whole when written in the text.
// Sentences are generated here with a fixed seed from pieces chosen to reach every rule: accents, CJK, Hangul, kana,
// emoji (with skin tones, ZWJ sequences and flags), ASCII and Unicode symbols and punctuation, control and format
// characters, odd whitespace, Greek final sigma, very long words, mixed case, written special tokens.
// Regenerate (vocab.txt from `headlens convert --model minilm --out DIR`):
//   (cd /tmp && npm install tokenizers@0.23.2)
//   NODE_PATH=/tmp/node_modules node tests/reference/wordpiece_ids.js DIR/vocab.txt
const fs = require("fs");
const path = require("path");
const { Tokenizer, WordPiece, bertNormalizer, bertPreTokenizer } = require("tokenizers");

const pieces = [
  "the", "Bank", "river", "naïve", "Café", "résumé", "Ångström", "über", "façade", "Éclair", "ﬁnance", "İstanbul",
  "Straße", "ΟΔΟΣ", "Σοφία", "東京", "北京大学", "こんにちは", "カタカナ", "한국어", "서울", "Привет", "Ελλάδα", "مرحبا",
  "שלום", "हिन्दी", "ไทย", "don't", "U.S.A.", "e-mail", "snake_case", "$100", "€5", "£3", "¥", "50%", "#hashtag",
  "@user", "a+b=c", "x^2", "~tilde", "`tick`", "|pipe|", "<tag>", "{brace}", "©2024", "™", "°C", "±", "×", "÷",
  "→", "∑", "√", "∞", "♥", "★", "...", "!!!", "?!", "(x)", "«quoted»", "“curly”", "—", "–", "…", "¿", "¡",
  "😀", "👍🏽", "👨‍👩‍👧", "🇫🇷", "🤖", "❤️", "☃", "[MASK]", "[CLS]", "[SEP]", "[UNK]", "[PAD]", "[mask]",
  "tokenization", "unbelievably", "MiniLM", "42", "3.14159", "１２３", "ＡＢＣ", "ﬀ", "½", "²",
];
const separators = [" ", " ", " ", " ", "", "  ", "\t", "\n", "\r\n", "\u00A0", "\u2009", "\u3000", "\u200B", "\uFEFF",
  "\u0007", "\u0000", "\uFFFD", "\u2028", "\u0085"];

// xorshift32: the same sentences on every run.
let state = 2463534242;
function next(n) {
  state ^= state << 13; state >>>= 0;
  state ^= state >>> 17;
  state ^= state << 5; state >>>= 0;
  return state % n;
}

function word() {
  switch (next(12)) {
    case 0: return String.fromCharCode(97 + next(26)).repeat(95 + next(12)); // around the 100-character limit
    case 1: return "ü".repeat(98 + next(5)); // the limit counts characters after normalisation
    case 2: return Array.from({ length: 1 + next(6) }, () => ".,;:!?-()'\"_$&*/\\"[next(17)]).join("");
    case 3: return pieces[next(pieces.length)].toUpperCase();
    default: return pieces[next(pieces.length)];
  }
}

async function main() {
  const vocabPath = process.argv[2];
  if (!vocabPath) throw new Error("usage: node wordpiece_ids.js VOCAB.txt");
  const model = await WordPiece.fromFile(vocabPath, { unkToken: "[UNK]", continuingSubwordPrefix: "##", maxInputCharsPerWord: 100 });
  const tokenizer = new Tokenizer(model);
  tokenizer.setNormalizer(bertNormalizer({ cleanText: true, handleChineseChars: true, lowercase: true }));
  tokenizer.setPreTokenizer(bertPreTokenizer());
  tokenizer.addSpecialTokens(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]);

  const cases = [];
  for (const piece of pieces) cases.push(piece); // every piece alone, then sentences
  for (let n = 0; n < 1200; n++) {
    const count = 1 + next(12);
    let text = "";
    for (let w = 0; w < count; w++) text += word() + separators[next(separators.length)];
    cases.push(text);
  }

  const out = [];
  for (const text of cases) {
    const encoding = await tokenizer.encode(text, null, { addSpecialTokens: false });
    out.push({ text, ids: Array.from(encoding.getIds()) });
  }

  const file = path.join(__dirname, "..", "HeadLens.Tests", "Fixtures", "wordpiece", "hf-uncased-ids.json");
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, JSON.stringify({
    source: "Hugging Face tokenizers 0.23.2 (npm), BertNormalizer(lowercase) + BertPreTokenizer + WordPiece, all-MiniLM-L6-v2 vocab.txt",
    cases: out,
  }) + "\n");
  console.log(`${out.length} texts, ${out.reduce((s, c) => s + c.ids.length, 0)} ids -> ${file}`);
}

main().catch(error => { console.error(error); process.exit(1); });
