// Golden token ids from the Hugging Face `tokenizers` library (its Node binding, which wraps
// the Rust crate), for tests/core/test_tokenizer.cpp.
//
// How to run (outside the repository; needs Node >= 18 and npm):
//   mkdir -p /tmp/tokgold && cd /tmp/tokgold && npm init -y && npm install tokenizers@0.23.2
//   NODE_PATH=/tmp/tokgold/node_modules node /path/to/mxlens/scripts/golden_tokenizer_ids.mjs \
//       /path/to/shared/data [DUMP_DIR] > golden.json
// (or copy this file into /tmp/tokgold and run it there.)
//
// Prints JSON: for each tokenizer x file x add_special_tokens: token count, SHA-256 of the
// ids as int32 little-endian, first and last 32 ids; for each tokenizer x edge-case string:
// the ids with and without special tokens and the decoded text. With DUMP_DIR, also writes
// every whole-file id sequence there, one id per line, to find the first differing position.
import { createRequire } from 'module';
import { createHash } from 'crypto';
import { readFileSync, writeFileSync, mkdirSync } from 'fs';
import path from 'path';

const require = createRequire(path.join(process.cwd(), 'noop.js'));
const { Tokenizer } = require('tokenizers');

const dataDir = process.argv[2];
const dumpDir = process.argv[3];
if (!dataDir) {
  console.error('usage: node golden_tokenizer_ids.mjs DATA_DIR [DUMP_DIR]');
  process.exit(2);
}
if (dumpDir) mkdirSync(dumpDir, { recursive: true });

const tokenizers = {
  '656k': 'tinystories-656k/tokenizer.json',
  llama3: 'tokenizers/llama3/tokenizer.json',
  spm32k: 'tokenizers/spm-bpe-32k/tokenizer.json',
};
const files = {
  wiki: 'wikitext-2-raw/wiki.test.raw',
  stories: 'tinystories-text/stories.txt',
};
// Keep in sync with kEdgeCases in tests/core/test_tokenizer.cpp.
export const edgeCases = [
  '',
  ' ',
  '   ',
  '\n\n\n',
  ' \n \n\n  \t\n',
  'Hello world',
  'Once upon a time, there was a little girl.',
  "I'M here, don't you'll we've THEY'RE it's 'S",
  '12345 1234567 3.14159 -42 1,000,000',
  'Ünïcödé lettérs ñ ß Ω ж',
  '数字123汉字 日本語テキスト 한국어',
  'emoji 😀👍🏽 🇫🇷 family 👨‍👩‍👧',
  'combining e\u0301 a\u0308 n\u0303',
  '<s>Hello</s> <unk> <|begin_of_text|>hi<|end_of_text|>',
  '<|start_story|>Once upon<|end_story|> x <|start_story|>',
  'Hello <|end_story|> and<|end_story|>',
  'tabs\tand\r\nCRLF\r\n',
  'nbsp\u00a0here and\u2003em space \u0085nel',
  '\u2581literal\u2581metaspace \u2581',
  '   leading and trailing spaces   ',
  'a',
  ' '.repeat(40) + 'x' + '\n'.repeat(5),
  '\u200b zero width \ufeff bom',
  "\u01c4 \u01c5 \u01c6 \u017f 's 'ſ \u212a",
  '<0x41> looks like a byte',
  ' = Robert Boulter = \n @-@ 1 @,@ 000 x = 1 ; y == 2',
];

function digest(ids) {
  const buf = Buffer.alloc(ids.length * 4);
  ids.forEach((id, k) => buf.writeInt32LE(id, k * 4));
  return createHash('sha256').update(buf).digest('hex');
}

const out = { library: 'tokenizers (npm) ' + require('tokenizers/package.json').version,
              files: [], edge: [] };
for (const [tname, tpath] of Object.entries(tokenizers)) {
  const tok = Tokenizer.fromFile(path.join(dataDir, tpath));
  for (const [fname, fpath] of Object.entries(files)) {
    const text = readFileSync(path.join(dataDir, fpath), 'utf8');
    for (const special of [true, false]) {
      const ids = (await tok.encode(text, null, { addSpecialTokens: special })).getIds();
      out.files.push({ tokenizer: tname, file: fname, special, count: ids.length,
                       sha256: digest(ids), first: ids.slice(0, 32), last: ids.slice(-32) });
      if (dumpDir)
        writeFileSync(path.join(dumpDir, `${tname}.${fname}.${special ? 'bos' : 'nobos'}.txt`),
                      ids.join('\n') + '\n');
    }
  }
  for (const [k, s] of edgeCases.entries()) {
    const withSpecial = (await tok.encode(s, null, { addSpecialTokens: true })).getIds();
    const without = (await tok.encode(s, null, { addSpecialTokens: false })).getIds();
    out.edge.push({ tokenizer: tname, index: k, text: s, ids: withSpecial, ids_no_special: without,
                    decoded: await tok.decode(withSpecial, false),
                    decoded_skip_special: await tok.decode(withSpecial, true) });
  }
}
console.log(JSON.stringify(out, null, 1));
