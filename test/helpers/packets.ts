/** Packet builders for tests: the same ones the lab's tools use. */
export * from '../../src/wire/build.js';
