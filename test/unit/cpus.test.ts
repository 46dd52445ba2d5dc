/** up --cpus: the CPU list as taskset -c writes it, and the checks that name the field and the rule. */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { allowedCpus, cpusOption, formatCpuList, parseCpuList } from '../../src/control/cpus.js';
import { ConfigError } from '../../src/fan/errors.js';

describe('CPU lists', () => {
  it('reads single CPUs, commas and ranges, sorted without duplicates', () => {
    expect(parseCpuList('1')).toEqual([1]);
    expect(parseCpuList('3,0-1,1')).toEqual([0, 1, 3]);
    expect(parseCpuList('0-3,6')).toEqual([0, 1, 2, 3, 6]);
  });

  it('refuses what is not a list, backwards ranges and CPUs Linux does not number', () => {
    for (const bad of ['', 'a', '1,', '-1', '1-', '0 1', '1.5']) expect(() => parseCpuList(bad), bad).toThrow(/CPU numbers and ranges/);
    expect(() => parseCpuList('3-1')).toThrow(/runs backwards/);
    expect(() => parseCpuList('4096')).toThrow(/0-4095/);
  });

  it('writes any set back in ranges that read as the same set', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.integer({ min: 0, max: 200 }), { minLength: 1, maxLength: 60 }), (xs) => {
        const sorted = [...xs].sort((a, b) => a - b);
        const text = formatCpuList(sorted);
        expect(parseCpuList(text)).toEqual(sorted);
        expect(text).not.toMatch(/(^|,)(\d+)-\2(,|$)/); // a lone CPU is written alone, not as "n-n"
      }),
    );
    expect(formatCpuList([0, 1, 2, 5, 7, 8])).toBe('0-2,5,7-8');
  });

  it('reads the allowed CPUs from /proc/self/status, and these include the CPU it runs on now', () => {
    expect(allowedCpus('Name:\tnode\nCpus_allowed:\t3\nCpus_allowed_list:\t0-1,4\n')).toEqual([0, 1, 4]);
    const mine = allowedCpus();
    // As many as sched_getaffinity gives this process (nproc asks it), ...
    expect(mine).toHaveLength(Number(execFileSync('nproc', { encoding: 'utf8' }).trim()));
    // ... and among them the CPU this thread last ran on: field 39 ("processor") of /proc/thread-self/stat,
    // counted after the command name in parentheses (which may hold spaces).
    const stat = readFileSync('/proc/thread-self/stat', 'utf8');
    const cpu = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[39 - 3]);
    expect(Number.isInteger(cpu)).toBe(true);
    expect(mine).toContain(cpu);
  });

  it('--cpus names the field and the rule: a malformed list, or CPUs this process may not use', () => {
    const err = (text: string) => {
      try {
        cpusOption('--cpus', text, [0, 1]);
      } catch (e) {
        expect(e).toBeInstanceOf(ConfigError);
        return (e as Error).message;
      }
      throw new Error(`${text} was accepted`);
    };
    expect(cpusOption('--cpus', '1', [0, 1])).toEqual([1]);
    expect(err('x')).toBe('--cpus "x": must be CPU numbers and ranges separated by commas, e.g. 1 or 0,2 or 0-3');
    expect(err('1-3')).toBe('--cpus "1-3": CPUs 2-3 are not among the CPUs this process may run on (0-1)');
    expect(err('5')).toBe('--cpus "5": CPU 5 is not among the CPUs this process may run on (0-1)');
  });
});
