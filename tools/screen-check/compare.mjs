//! Cross-emulator check of ScreenModel snapshots, run in @xterm/headless.
//!
//! Usage:
//!   node compare.mjs <recording> <snapshot> <cols> <rows> <scrollback>
//!
//! Writes the raw recording into one xterm.js terminal and the snapshot into
//! another (both fresh, of the same size, with Unicode 11 widths as the
//! browser front end uses) and compares what a viewer would see: every cell
//! of the active buffer (character, width, colour modes and values, bold,
//! italic, underline, inverse, dim, strikethrough, blink), each row's wrap
//! flag, the cursor position and visibility, the active buffer type, the
//! scroll region, the DEC/ANSI modes (cursor keys, insert, origin, wrap,
//! bracketed paste, focus, keypad, mouse tracking and encoding), and the text and cells
//! of the primary buffer's visible rows and of the last <scrollback> lines
//! of its history. Prints the differences and exits with status 1 on any mismatch
//! (2 on bad usage).

import { readFileSync } from 'node:fs';
import headless from '@xterm/headless';
import unicode11 from '@xterm/addon-unicode11';

const { Terminal } = headless;
const { Unicode11Addon } = unicode11;

/** The longest history kept by either terminal: far above any limit used. */
const HISTORY = 100000;
/** How many differences are printed before the rest are only counted. */
const MAX_REPORTED = 40;

function usage() {
  console.error('usage: node compare.mjs <recording> <snapshot> <cols> <rows> <scrollback>');
  process.exit(2);
}

/** Creates a terminal of the given size and feeds it `data`. */
async function load(data, cols, rows) {
  const term = new Terminal({ cols, rows, scrollback: HISTORY, allowProposedApi: true });
  term.loadAddon(new Unicode11Addon());
  term.unicode.activeVersion = '11';
  await new Promise((resolve) => term.write(data, resolve));
  return term;
}

/**
 * The comparable state of one cell. A never-written cell reads as a space.
 * Characters are compared in Unicode's composed form (NFC): xterm.js keeps
 * `e` + U+0301 as written, the server's model stores the one character `é`,
 * and a viewer sees the same glyph.
 */
function cellState(cell) {
  return {
    chars: (cell.getChars() || ' ').normalize('NFC'),
    width: cell.getWidth(),
    fgMode: cell.getFgColorMode(),
    fg: cell.getFgColor(),
    bgMode: cell.getBgColorMode(),
    bg: cell.getBgColor(),
    bold: !!cell.isBold(),
    italic: !!cell.isItalic(),
    underline: !!cell.isUnderline(),
    inverse: !!cell.isInverse(),
    dim: !!cell.isDim(),
    strikethrough: !!cell.isStrikethrough(),
    blink: !!cell.isBlink(),
  };
}

/** Terminal-wide state: buffer, cursor, region and modes. */
function globalState(term) {
  const buffer = term.buffer.active;
  // Cursor visibility and the scroll region have no public API, so they are
  // read from the core object; a missing field reads as undefined on both.
  const core = term._core;
  return {
    buffer: buffer.type,
    cursorX: buffer.cursorX,
    cursorY: buffer.cursorY,
    cursorHidden: core?.coreService?.isCursorHidden,
    scrollTop: core?.buffer?.scrollTop,
    scrollBottom: core?.buffer?.scrollBottom,
    applicationCursorKeysMode: term.modes.applicationCursorKeysMode,
    insertMode: term.modes.insertMode,
    originMode: term.modes.originMode,
    wraparoundMode: term.modes.wraparoundMode,
    // Modes avt ignores, which ScreenModel tracks itself.
    bracketedPasteMode: term.modes.bracketedPasteMode,
    sendFocusMode: term.modes.sendFocusMode,
    applicationKeypadMode: term.modes.applicationKeypadMode,
    mouseTrackingMode: term.modes.mouseTrackingMode,
    mouseEncoding: core?.coreMouseService?.activeEncoding,
  };
}

/**
 * Text of lines [from, to) of a buffer with trailing spaces trimmed (written
 * spaces as well as never-written cells), and each line's cells.
 */
function lines(buffer, from, to) {
  const out = [];
  const cell = buffer.getNullCell();
  for (let y = from; y < to; y++) {
    const line = buffer.getLine(y);
    const cells = [];
    for (let x = 0; line && x < line.length; x++) cells.push(cellState(line.getCell(x, cell)));
    out.push({ text: (line?.translateToString(true) ?? '').trimEnd().normalize('NFC'), cells, wrapped: line?.isWrapped });
  }
  return out;
}

/** Describes how two lines from `lines` differ, or returns null. */
function lineDiff(l1, l2) {
  if (!l2) return 'missing';
  if (l1.text !== l2.text) return `${JSON.stringify(l1.text)} vs ${JSON.stringify(l2.text)}`;
  if (l1.wrapped !== l2.wrapped) return `wrapped flag ${l1.wrapped} vs ${l2.wrapped} in ${JSON.stringify(l1.text)}`;
  for (let x = 0; x < l1.cells.length; x++) {
    for (const key of Object.keys(l1.cells[x])) {
      if (l1.cells[x][key] !== l2.cells[x]?.[key]) {
        return `col ${x} ${key}: ${JSON.stringify(l1.cells[x][key])} vs ${JSON.stringify(l2.cells[x]?.[key])} in ${JSON.stringify(l1.text)}`;
      }
    }
  }
  return null;
}

function compare(recorded, restored, rows, cols, scrollback) {
  const diffs = [];
  const note = (message) => diffs.push(message);

  const g1 = globalState(recorded);
  const g2 = globalState(restored);
  for (const key of Object.keys(g1)) {
    if (g1[key] !== g2[key]) note(`${key}: recording ${g1[key]}, snapshot ${g2[key]}`);
  }

  const a1 = recorded.buffer.active;
  const a2 = restored.buffer.active;
  const c1 = a1.getNullCell();
  const c2 = a2.getNullCell();
  for (let y = 0; y < rows; y++) {
    const l1 = a1.getLine(a1.baseY + y);
    const l2 = a2.getLine(a2.baseY + y);
    if (!l1 || !l2) {
      note(`row ${y}: missing line`);
      continue;
    }
    const rowDiffs = [];
    if (l1.isWrapped !== l2.isWrapped) {
      rowDiffs.push(`wrapped flag ${l1.isWrapped} vs ${l2.isWrapped}`);
    }
    for (let x = 0; x < cols; x++) {
      const s1 = cellState(l1.getCell(x, c1));
      const s2 = cellState(l2.getCell(x, c2));
      for (const key of Object.keys(s1)) {
        if (s1[key] !== s2[key]) {
          rowDiffs.push(`col ${x} ${key}: ${JSON.stringify(s1[key])} vs ${JSON.stringify(s2[key])}`);
        }
      }
    }
    if (rowDiffs.length > 0) {
      note(`row ${y}: ${rowDiffs.slice(0, 6).join('; ')}${rowDiffs.length > 6 ? ` (+${rowDiffs.length - 6})` : ''}\n` +
        `  recording: ${JSON.stringify(l1.translateToString(true))}\n` +
        `  snapshot:  ${JSON.stringify(l2.translateToString(true))}`);
    }
  }

  // The primary buffer: its visible rows (which matter once the alternate
  // screen is left) and the tail of its history.
  const n1 = recorded.buffer.normal;
  const n2 = restored.buffer.normal;
  const v1 = lines(n1, n1.baseY, n1.baseY + rows);
  const v2 = lines(n2, n2.baseY, n2.baseY + rows);
  v1.forEach((line, y) => {
    const diff = lineDiff(line, v2[y]);
    if (diff) note(`primary row ${y}: ${diff}`);
  });

  const expectedHistory = Math.min(scrollback, n1.baseY);
  if (n2.baseY !== expectedHistory) {
    note(`history length: snapshot has ${n2.baseY} lines, expected ${expectedHistory}`);
  }
  const h1 = lines(n1, n1.baseY - expectedHistory, n1.baseY);
  const h2 = lines(n2, Math.max(0, n2.baseY - expectedHistory), n2.baseY);
  h1.forEach((line, i) => {
    const diff = lineDiff(line, h2[i]);
    if (diff) note(`history line -${expectedHistory - i}: ${diff}`);
  });

  return diffs;
}

async function main() {
  const [recordingPath, snapshotPath, colsArg, rowsArg, scrollbackArg] = process.argv.slice(2);
  const cols = Number(colsArg);
  const rows = Number(rowsArg);
  const scrollback = Number(scrollbackArg);
  if (!snapshotPath || !(cols > 0) || !(rows > 0) || !(scrollback >= 0)) usage();

  const recorded = await load(new Uint8Array(readFileSync(recordingPath)), cols, rows);
  const restored = await load(new Uint8Array(readFileSync(snapshotPath)), cols, rows);
  const diffs = compare(recorded, restored, rows, cols, scrollback);

  if (diffs.length === 0) {
    console.log(`screens match (${cols}x${rows}, ${recorded.buffer.normal.baseY} history lines recorded)`);
    return;
  }
  console.log(`${diffs.length} difference(s) between recording (left) and snapshot (right):`);
  for (const diff of diffs.slice(0, MAX_REPORTED)) console.log(`- ${diff}`);
  if (diffs.length > MAX_REPORTED) console.log(`... and ${diffs.length - MAX_REPORTED} more`);
  process.exit(1);
}

await main();
