// Golden token ids from the Hugging Face `tokenizers` library (its Node binding, which wraps
// the Rust crate), for tests/core/test_tokenizer.cpp.
//
// How to run (outside the repository; needs Node >= 18 and npm):
//   mkdir -p /tmp/tokgold && cd /tmp/tokgold && npm init -y && npm install tokenizers@0.23.2
//   NODE_PATH=/tmp/tokgold/node_modules node /path/to/mxlens/scripts/golden_tokenizer_ids.mjs \
//       /path/to/shared/data [DUMP_DIR] > golden.json
//
// Prints JSON: "files": for each tokenizer x file x add_special_tokens: token count, SHA-256
// of the ids as int32 little-endian, first and last 32 ids; "edge": for each tokenizer x
// edge-case string, the ids with and without special tokens and the decoded text (with and
// without skip_special_tokens); "variants": the same for variant tokenizer.json files built
// from the real ones (written to a temporary directory; make_variant() in the test builds the
// same files). With DUMP_DIR, also writes every whole-file id sequence there, one id per line,
// to find the first differing position. tests/core/tokenizer_golden.h holds this output.
//
// Any file, compared with mxlens-cli (same output format, so `cmp` works):
//   NODE_PATH=... node golden_tokenizer_ids.mjs --ids TOKENIZER_JSON FILE [--no-special] > hf.json
//   mxlens-cli tokenize TOKENIZER_JSON FILE --json [--no-special] > ours.json && cmp hf.json ours.json
import { createRequire } from 'module';
import { createHash } from 'crypto';
import { readFileSync, writeFileSync, mkdirSync, mkdtempSync } from 'fs';
import os from 'os';
import path from 'path';

const require = createRequire(path.join(process.cwd(), 'noop.js'));
const { Tokenizer } = require('tokenizers');

if (process.argv[2] === '--ids') {
  const tok = Tokenizer.fromFile(process.argv[3]);
  const text = readFileSync(process.argv[4], 'utf8');
  const special = process.argv[5] !== '--no-special';
  const ids = (await tok.encode(text, null, { addSpecialTokens: special })).getIds();
  process.stdout.write('{"ids":[' + ids.join(',') + ']}\n');
  process.exit(0);
}

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
// Variants exercising components the three files do not use (Metaspace, Split behaviors,
// GPT-2 ByteLevel regex, Strip/Replace-regex normalizers, lstrip/rstrip/single_word added
// tokens, merges as pairs, fuse_unk off, a BOS+EOS template).
const readJson = (p) => JSON.parse(readFileSync(path.join(dataDir, p), 'utf8'));
const spm = () => readJson(tokenizers.spm32k);
const l3 = () => readJson(tokenizers.llama3);
const s656 = () => readJson(tokenizers['656k']);
const variants = {};
for (const [scheme, split] of [['first', false], ['always', true], ['never', true]]) {
  const j = spm();
  j.normalizer = null;
  j.pre_tokenizer = { type: 'Metaspace', replacement: '\u2581', prepend_scheme: scheme, split };
  j.decoder = j.pre_tokenizer;
  variants[`spm_metaspace_${scheme}_${split}`] = j;
}
{
  const j = l3();
  j.pre_tokenizer = { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true };
  variants.l3_gpt2 = j;
}
for (const [behavior, invert] of [['Removed', false], ['MergedWithPrevious', false],
  ['MergedWithNext', false], ['Contiguous', false], ['Isolated', true]]) {
  const j = l3();
  j.pre_tokenizer = { type: 'Sequence', pretokenizers: [
    { type: 'Split', pattern: { String: ' ' }, behavior, invert },
    { type: 'Split', pattern: { Regex: '\\p{N}' }, behavior, invert },
    { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false }] };
  variants[`l3_split_${behavior}_${invert}`] = j;
}
{
  const j = l3();
  j.normalizer = { type: 'Sequence', normalizers: [
    { type: 'Strip', strip_left: true, strip_right: true },
    { type: 'Replace', pattern: { Regex: ' {2,}' }, content: ' ' }] };
  variants.l3_norm = j;
}
{
  const j = s656();
  for (const t of j.added_tokens) {
    if (t.content === '<|end_story|>') { t.lstrip = true; t.rstrip = true; t.normalized = false; }
    if (t.content === '<|start_story|>') { t.single_word = true; t.normalized = false; }
  }
  j.added_tokens.push({ id: 2048, content: 'girl', single_word: true, lstrip: false,
                        rstrip: false, normalized: true, special: false });
  j.added_tokens.push({ id: 2049, content: ' lily', single_word: false, lstrip: false,
                        rstrip: false, normalized: false, special: true });
  variants.s656_added = j;
}
{ const j = spm(); j.model.merges = j.model.merges.map((m) => m.split(' ')); variants.spm_pairs = j; }
{ const j = s656(); j.model.fuse_unk = false; variants.s656_nofuse = j; }
{
  const j = l3();
  const special = (name, id) => ({ id: name, ids: [id], tokens: [name] });
  j.post_processor = { type: 'Sequence', processors: [
    { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
    { type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<|begin_of_text|>', type_id: 0 } },
               { Sequence: { id: 'A', type_id: 0 } },
               { SpecialToken: { id: '<|end_of_text|>', type_id: 0 } }],
      pair: [{ Sequence: { id: 'A', type_id: 0 } }],
      special_tokens: { '<|begin_of_text|>': special('<|begin_of_text|>', 128000),
                        '<|end_of_text|>': special('<|end_of_text|>', 128001) } }] };
  variants.l3_template = j;
}
// Keep in sync with the variant rows in tests/core/tokenizer_golden.h (their "index" is the
// position in this list).
const variantCases = ['', ' ', 'Hello world', ' Hello', '  two  spaces  ', 'a girl',
  'agirl girl_ girl.', 'x <|end_story|>  y', '<|start_story|>x', 'x <|start_story|> y',
  'Lily lily Lily', '  345345\u00a0</s>\u00a0\u00a0', '345\u017f</s>345345\u00a0</s>\u00e9\u00a0345\u00a0  '];
const tmp = mkdtempSync(path.join(os.tmpdir(), 'tokvariants-'));
out.variants = [];
for (const [name, j] of Object.entries(variants)) {
  const p = path.join(tmp, name + '.json');
  writeFileSync(p, JSON.stringify(j));
  const tok = Tokenizer.fromFile(p);
  for (const k of [2, 4, 6, 7, 8, 11, 12]) {
    const s = variantCases[k];
    const withSpecial = (await tok.encode(s, null, { addSpecialTokens: true })).getIds();
    const without = (await tok.encode(s, null, { addSpecialTokens: false })).getIds();
    out.variants.push({ tokenizer: name, index: k, text: s, ids: withSpecial, ids_no_special: without,
                        decoded: await tok.decode(withSpecial, false),
                        decoded_skip_special: await tok.decode(withSpecial, true) });
  }
}
console.log(JSON.stringify(out, null, 1));
