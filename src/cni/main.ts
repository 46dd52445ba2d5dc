#!/usr/bin/env node
/**
 * The `userfan` CNI plugin's executable: a runtime runs it (through the launcher `userfan cni install`
 * writes) with CNI_* variables and the network configuration on stdin; it prints a result or a CNI error
 * object on stdout and exits 0 or 1.
 */
import { errorObject } from './errors.js';
import { parseEnv } from './config.js';
import { errorVersion, runCommand } from './plugin.js';

async function readStdin(): Promise<string> {
  if (process.stdin.isTTY) return '';
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

async function main(): Promise<number> {
  let stdin = '';
  try {
    const env = parseEnv(process.env);
    stdin = await readStdin();
    const out = await runCommand(env, stdin);
    if (out) process.stdout.write(`${out}\n`);
    return 0;
  } catch (e) {
    const obj = errorObject(e, errorVersion(stdin));
    process.stdout.write(`${JSON.stringify(obj)}\n`);
    process.stderr.write(`userfan CNI: ${obj.msg}\n`);
    return 1;
  }
}

process.exitCode = await main();
