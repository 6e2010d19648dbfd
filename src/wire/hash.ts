/**
 * Step hashes exactly as the Rust original computes them with `DefaultHasher::new()`:
 * SipHash-1-3 with both keys 0. Checkpoints written by Rust carry these values, and
 * replay only hits the cache when ours match bit for bit.
 */
import { ValidationError } from "../errors.js";
import { jsonTextAt } from "./codec.js";
import type { Json } from "./json.js";

const utf8 = new TextEncoder();

/** Hash of the step identity: the name's UTF-8 bytes, 0xFF (Rust's str terminator), the ordinal as u32 LE. */
export function identityHash(name: string, ordinal: number): bigint {
  if (typeof name !== "string") throw new ValidationError("$.name", "expected a string");
  if (!Number.isInteger(ordinal) || ordinal < 0 || ordinal > 0xffff_ffff) {
    throw new ValidationError("$.ordinal", `expected a u32, got ${String(ordinal)}`);
  }
  const bytes = utf8.encode(name);
  const message = new Uint8Array(bytes.length + 5);
  message.set(bytes);
  const view = new DataView(message.buffer);
  view.setUint8(bytes.length, 0xff);
  view.setUint32(bytes.length + 1, ordinal, true);
  return sipHash13(message);
}

/** Hash of a key's compact JSON: its UTF-8 length as u64 LE (Rust's slice length prefix), then the bytes. */
export function contentHash(key: Json): bigint {
  const bytes = utf8.encode(jsonTextAt(key, "$.key"));
  const message = new Uint8Array(bytes.length + 8);
  const view = new DataView(message.buffer);
  view.setUint32(0, bytes.length, true); // high half stays 0: a JS string's UTF-8 is far below 2^32 bytes
  message.set(bytes, 8);
  return sipHash13(message);
}

/**
 * SipHash-1-3 with k0 = k1 = 0 over a whole message. Each 64-bit lane is a pair of
 * uint32 halves in `s` (hi at even index, lo at odd): v0 = s[0..1] … v3 = s[6..7].
 */
function sipHash13(message: Uint8Array): bigint {
  // Initial state: "somepseudorandomlygeneratedbytes" xor the zero keys.
  const s = new Uint32Array([
    0x736f6d65, 0x70736575, 0x646f7261, 0x6e646f6d, 0x6c796765, 0x6e657261, 0x74656462, 0x79746573,
  ]);
  const view = new DataView(message.buffer, message.byteOffset, message.byteLength);
  const tailStart = message.length - (message.length % 8);
  for (let i = 0; i < tailStart; i += 8) {
    compress(s, view.getUint32(i + 4, true), view.getUint32(i, true));
  }
  // The last word holds the leftover bytes and the message length mod 256 in its top byte.
  let lo = 0;
  let hi = (message.length & 0xff) << 24;
  for (let i = tailStart; i < message.length; i++) {
    const shift = (i - tailStart) * 8;
    const byte = message[i] as number;
    if (shift < 32) lo |= byte << shift;
    else hi |= byte << (shift - 32);
  }
  compress(s, hi >>> 0, lo >>> 0);
  s[5] = (s[5] as number) ^ 0xff; // v2 ^= 0xff
  sipRound(s);
  sipRound(s);
  sipRound(s);
  const outHi = ((s[0] as number) ^ (s[2] as number) ^ (s[4] as number) ^ (s[6] as number)) >>> 0;
  const outLo = ((s[1] as number) ^ (s[3] as number) ^ (s[5] as number) ^ (s[7] as number)) >>> 0;
  return (BigInt(outHi) << 32n) | BigInt(outLo);
}

/** Absorbs one 64-bit word with a single round (the "1" in SipHash-1-3). */
function compress(s: Uint32Array, hi: number, lo: number): void {
  s[6] = (s[6] as number) ^ hi;
  s[7] = (s[7] as number) ^ lo;
  sipRound(s);
  s[0] = (s[0] as number) ^ hi;
  s[1] = (s[1] as number) ^ lo;
}

function sipRound(s: Uint32Array): void {
  add(s, 0, 2); // v0 += v1
  rotl(s, 2, 13);
  xor(s, 2, 0); // v1 ^= v0
  swapHalves(s, 0); // v0 = rotl(v0, 32)
  add(s, 4, 6); // v2 += v3
  rotl(s, 6, 16);
  xor(s, 6, 4); // v3 ^= v2
  add(s, 0, 6); // v0 += v3
  rotl(s, 6, 21);
  xor(s, 6, 0); // v3 ^= v0
  add(s, 4, 2); // v2 += v1
  rotl(s, 2, 17);
  xor(s, 2, 4); // v1 ^= v2
  swapHalves(s, 4); // v2 = rotl(v2, 32)
}

/** s[a] += s[b] modulo 2^64 (lanes given by their hi index). */
function add(s: Uint32Array, a: number, b: number): void {
  const lo = (s[a + 1] as number) + (s[b + 1] as number);
  s[a] = (s[a] as number) + (s[b] as number) + (lo > 0xffffffff ? 1 : 0);
  s[a + 1] = lo; // Uint32Array storage wraps both halves mod 2^32
}

function xor(s: Uint32Array, a: number, b: number): void {
  s[a] = (s[a] as number) ^ (s[b] as number);
  s[a + 1] = (s[a + 1] as number) ^ (s[b + 1] as number);
}

/** Rotates a lane left by 0 < r < 32 bits. */
function rotl(s: Uint32Array, a: number, r: number): void {
  const hi = s[a] as number;
  const lo = s[a + 1] as number;
  s[a] = (hi << r) | (lo >>> (32 - r));
  s[a + 1] = (lo << r) | (hi >>> (32 - r));
}

function swapHalves(s: Uint32Array, a: number): void {
  const hi = s[a] as number;
  s[a] = s[a + 1] as number;
  s[a + 1] = hi;
}
