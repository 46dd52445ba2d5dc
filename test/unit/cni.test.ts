/**
 * The CNI plugin's pure parts: the network configuration and CNI_* variables it accepts and the errors
 * it gives (each names its field and rule, with the spec's code), the bridge/host-local configuration it
 * hands on for each fan type, the result and VERSION answers, the error objects, and the launcher and
 * configuration `userfan cni install` writes.
 */
import { describe, expect, it } from 'vitest';
import { checkVersion, DEFAULT_DATA_DIR, parseEnv, parseNetConf, SUPPORTED_VERSIONS } from '../../src/cni/config.js';
import { adaptResult, bridgeConf, delegateVersion, explainDelegateError, hostInterface, poolOf, versionAnswer, type FanHere } from '../../src/cni/delegate.js';
import { CniError, CODE, errorObject } from '../../src/cni/errors.js';
import { conflist, launcherText } from '../../src/cni/install.js';
import { ConfigError } from '../../src/fan/errors.js';

const ok = { cniVersion: '1.0.0', name: 'fan', type: 'userfan' };
const parse = (o: unknown) => parseNetConf(JSON.stringify(o));

function cniError(f: () => unknown): CniError {
  try {
    f();
  } catch (e) {
    if (e instanceof CniError) return e;
    throw e;
  }
  throw new Error('expected a CniError');
}

const ipip: FanHere = { overlay: '250.0.0.0/8', underlay: '198.18.0.0/16', slice: '250.0.28.0/24', bridge: 'fan-250-0-28', hostReserve: 1, type: 'ipip', mtu: 1480 };
const vxlan: FanHere = { ...ipip, slice: '250.0.27.0/24', bridge: 'fan-250', type: 'vxlan', mtu: 1450 };

describe('network configuration', () => {
  it('takes the least a user writes, with the default data directory', () => {
    expect(parse(ok)).toEqual({ cniVersion: '1.0.0', name: 'fan', type: 'userfan', dataDir: DEFAULT_DATA_DIR });
  });

  it('keeps the fields it knows, prevResult and GC\'s attachments, and ignores others (args, runtimeConfig)', () => {
    const c = parse({ ...ok, cniVersion: '1.1.0', overlay: '250.0.0.0/8', underlay: 'eth0/16', bridge: 'fan-250-0-28', dataDir: '/srv/cni', args: { x: 1 }, runtimeConfig: {}, prevResult: { ips: [] }, 'cni.dev/valid-attachments': [{ containerID: 'c1', ifname: 'eth0' }] });
    expect(c).toEqual({ cniVersion: '1.1.0', name: 'fan', type: 'userfan', overlay: '250.0.0.0/8', underlay: 'eth0/16', bridge: 'fan-250-0-28', dataDir: '/srv/cni', prevResult: { ips: [] }, validAttachments: [{ containerID: 'c1', ifname: 'eth0' }] });
  });

  it.each([
    [{ ...ok, cniVersion: undefined }, 7, 'network configuration: cniVersion undefined: is missing: set it to one of 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0'],
    [{ ...ok, cniVersion: '0.2.0' }, 1, 'network configuration: cniVersion "0.2.0": userfan speaks 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0'],
    [{ ...ok, name: '-x' }, 7, 'network configuration: name "-x": must start with a letter or digit, then letters, digits, _ . - (the network\'s name)'],
    [{ ...ok, name: undefined }, 7, /^network configuration: name undefined: must start/],
    [{ ...ok, overlay: '250.0.0.1/8' }, 7, 'network configuration: overlay "250.0.0.1/8": host bits are set; an overlay must be a network address, e.g. 250.0.0.0/8'],
    [{ ...ok, overlay: '250.0.0/8' }, 7, 'network configuration: overlay "250.0.0/8": 250.0.0 is not an IPv4 address (four decimal octets 0-255)'],
    [{ ...ok, overlay: 8 }, 7, 'network configuration: overlay 8: must be a non-empty string'],
    [{ ...ok, underlay: '198.18.0.28/16' }, 7, /^network configuration: underlay "198\.18\.0\.28\/16": needs overlay beside it/],
    [{ ...ok, overlay: '250.0.0.0/8', underlay: '198.18.0.28/33' }, 7, 'network configuration: underlay "198.18.0.28/33": prefix length 33 is out of range: it must be 0 to 32'],
    [{ ...ok, bridge: 'a-bridge-name-too-long' }, 7, /^network configuration: bridge "a-bridge-name-too-long": must be 1-15 characters/],
    [{ ...ok, dataDir: 'var/lib' }, 7, 'network configuration: dataDir "var/lib": must be an absolute path without ..'],
    [{ ...ok, dataDir: '/var/../etc' }, 7, 'network configuration: dataDir "/var/../etc": must be an absolute path without ..'],
    [{ ...ok, ipam: { type: 'host-local' } }, 7, /^network configuration: ipam \{"type":"host-local"\}: userfan hands out addresses from this host's slice itself/],
    [{ ...ok, prevResult: [] }, 7, 'network configuration: prevResult []: must be a result object'],
    [{ ...ok, 'cni.dev/valid-attachments': [{ containerID: 1 }] }, 7, /^network configuration: cni\.dev\/valid-attachments .*: must be a list of/],
  ])('refuses %j with code %i and one line naming the field', (conf, code, msg) => {
    const e = cniError(() => parse(conf));
    expect(e.code).toBe(code);
    if (typeof msg === 'string') expect(e.message).toBe(msg);
    else expect(e.message).toMatch(msg);
    expect(e.message).not.toContain('\n');
  });

  it('refuses stdin that is not a JSON object (code 6)', () => {
    expect(cniError(() => parseNetConf('nope')).code).toBe(CODE.decode);
    expect(cniError(() => parseNetConf('nope')).message).toMatch(/^network configuration on stdin is not JSON \(.*\): userfan is a CNI plugin/);
    expect(cniError(() => parseNetConf('[1]')).message).toBe('network configuration on stdin must be a JSON object');
  });

  it('speaks 0.3.0 to 1.1.0', () => {
    for (const v of SUPPORTED_VERSIONS) expect(checkVersion(v)).toBe(v);
    expect(cniError(() => checkVersion('2.0.0')).code).toBe(CODE.incompatibleVersion);
  });
});

describe('CNI_* variables', () => {
  const add = { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'abc-1.x_y', CNI_NETNS: '/run/netns/c1', CNI_IFNAME: 'eth0', CNI_PATH: '/opt/cni/bin:/usr/lib/cni' };

  it('reads ADD\'s, DEL\'s (no netns needed) and VERSION\'s', () => {
    expect(parseEnv({ ...add, CNI_ARGS: 'IgnoreUnknown=1' })).toEqual({ command: 'ADD', containerId: 'abc-1.x_y', netns: '/run/netns/c1', ifname: 'eth0', path: ['/opt/cni/bin', '/usr/lib/cni'], args: 'IgnoreUnknown=1' });
    expect(parseEnv({ ...add, CNI_COMMAND: 'DEL', CNI_NETNS: undefined })).toEqual({ command: 'DEL', containerId: 'abc-1.x_y', ifname: 'eth0', path: ['/opt/cni/bin', '/usr/lib/cni'] });
    expect(parseEnv({ CNI_COMMAND: 'VERSION' })).toEqual({ command: 'VERSION', path: [] });
    expect(parseEnv({ CNI_COMMAND: 'GC', CNI_PATH: '/x' })).toEqual({ command: 'GC', path: ['/x'] });
  });

  it.each([
    [{}, 'CNI_COMMAND is not set: must be one of ADD, DEL, CHECK, VERSION, GC, STATUS: userfan is a CNI plugin, run by a container runtime (see docs/cni.md)'],
    [{ ...add, CNI_COMMAND: 'add' }, /^CNI_COMMAND "add": must be one of/],
    [{ ...add, CNI_CONTAINERID: '../x' }, 'CNI_CONTAINERID "../x": must start with a letter or digit, then letters, digits, _ . -'],
    [{ ...add, CNI_IFNAME: 'a/b' }, 'CNI_IFNAME "a/b": must be an interface name: 1-15 characters, no / : or spaces'],
    [{ ...add, CNI_IFNAME: 'x'.repeat(16) }, /^CNI_IFNAME "x{16}": must be an interface name/],
    [{ ...add, CNI_NETNS: '' }, 'CNI_NETNS is not set: ADD needs the container\'s network namespace (a path such as /run/netns/NAME)'],
    [{ ...add, CNI_COMMAND: 'CHECK', CNI_NETNS: undefined }, /^CNI_NETNS is not set: CHECK needs/],
    [{ ...add, CNI_PATH: '' }, 'CNI_PATH is not set: must list the directories of the CNI plugins (userfan runs bridge and host-local from there)'],
  ])('refuses %j with code 4', (env, msg) => {
    const e = cniError(() => parseEnv(env as Record<string, string>));
    expect(e.code).toBe(CODE.badEnvironment);
    if (typeof msg === 'string') expect(e.message).toBe(msg);
    else expect(e.message).toMatch(msg);
  });
});

describe('what the bridge plugin is handed', () => {
  it('IP-in-IP: the slice is the subnet; .2 to .254 after host-reserve 1; default route via .1; the fan\'s bridge and MTU; no gateway, masquerade or hairpin of its own', () => {
    expect(poolOf(ipip)).toEqual({ subnet: '250.0.28.0/24', gateway: '250.0.28.1', rangeStart: '250.0.28.2', rangeEnd: '250.0.28.254', size: 253 });
    expect(bridgeConf({ ...ok, dataDir: '/d' }, ipip)).toEqual({
      cniVersion: '1.0.0', name: 'fan', type: 'bridge', bridge: 'fan-250-0-28', isGateway: false, isDefaultGateway: false, ipMasq: false, hairpinMode: false, mtu: 1480,
      ipam: {
        type: 'host-local', dataDir: '/d/ipam',
        ranges: [[{ subnet: '250.0.28.0/24', rangeStart: '250.0.28.2', rangeEnd: '250.0.28.254', gateway: '250.0.28.1' }]],
        routes: [{ dst: '0.0.0.0/0', gw: '250.0.28.1' }],
      },
    });
  });

  it('VXLAN: the overlay is the subnet (one L2 segment), the slice the range', () => {
    expect(poolOf(vxlan)).toEqual({ subnet: '250.0.0.0/8', gateway: '250.0.27.1', rangeStart: '250.0.27.2', rangeEnd: '250.0.27.254', size: 253 });
    expect(bridgeConf({ ...ok, dataDir: '/d' }, vxlan)).toMatchObject({ bridge: 'fan-250', mtu: 1450 });
  });

  it('host-reserve keeps the host\'s addresses out of the range; a /16 slice and a /30 one', () => {
    expect(poolOf({ ...ipip, hostReserve: 250 })).toMatchObject({ rangeStart: '250.0.28.251', rangeEnd: '250.0.28.254', size: 4 });
    expect(poolOf({ ...ipip, overlay: '250.0.0.0/8', slice: '250.28.0.0/16', hostReserve: 10 })).toMatchObject({ rangeStart: '250.28.0.11', rangeEnd: '250.28.255.254', size: 65524 });
    expect(poolOf({ ...ipip, slice: '250.0.28.4/30' })).toMatchObject({ gateway: '250.0.28.5', rangeStart: '250.0.28.6', rangeEnd: '250.0.28.6', size: 1 });
    expect(cniError(() => poolOf({ ...ipip, slice: '250.0.28.4/30', hostReserve: 2 })).code).toBe(CODE.sliceExhausted);
  });

  it('runs the delegates at 1.0.0 for a 1.1.0 configuration, else at the configuration\'s version', () => {
    expect(delegateVersion('1.1.0')).toBe('1.0.0');
    expect(delegateVersion('0.4.0')).toBe('0.4.0');
    expect(bridgeConf({ ...ok, cniVersion: '1.1.0', dataDir: '/d' }, ipip).cniVersion).toBe('1.0.0');
  });
});

describe('results and errors', () => {
  const result = { cniVersion: '1.0.0', interfaces: [{ name: 'fan-250-0-28', mac: 'a' }, { name: 'veth1234', mac: 'b' }, { name: 'eth0', mac: 'c', sandbox: '/run/netns/c1' }], ips: [{ interface: 2, address: '250.0.28.2/24', gateway: '250.0.28.1' }] };

  it('passes the bridge plugin\'s result on in the configuration\'s version, and finds the host side of the link', () => {
    expect(adaptResult(result, '1.1.0')).toEqual({ ...result, cniVersion: '1.1.0' });
    expect(hostInterface(result, 'fan-250-0-28')).toBe('veth1234');
    expect(hostInterface({ interfaces: [] }, 'fan-250-0-28')).toBeUndefined();
  });

  it('answers VERSION with the version asked for when it speaks it, else the latest', () => {
    expect(versionAnswer('0.4.0', SUPPORTED_VERSIONS, '1.1.0')).toEqual({ cniVersion: '0.4.0', supportedVersions: [...SUPPORTED_VERSIONS] });
    expect(versionAnswer('9.9.9', SUPPORTED_VERSIONS, '1.1.0').cniVersion).toBe('1.1.0');
    expect(versionAnswer(undefined, SUPPORTED_VERSIONS, '1.1.0').cniVersion).toBe('1.1.0');
  });

  it('says an exhausted slice in the fan\'s terms (code 100), and passes other delegate errors on', () => {
    const e = explainDelegateError(new CniError(999, 'bridge plugin: failed to allocate for range 0: no IP addresses available in range set: 250.0.28.251-250.0.28.254'), { ...ipip, hostReserve: 250 });
    expect(e.code).toBe(CODE.sliceExhausted);
    expect(e.message).toBe('slice 250.0.28.0/24 of fan 250.0.0.0/8 is exhausted: all 4 container addresses (250.0.28.251-250.0.28.254, after host-reserve 250) are in use on this host');
    expect(e.details).toMatch(/no IP addresses available/);
    const other = new CniError(999, 'bridge plugin: something else');
    expect(explainDelegateError(other, ipip)).toBe(other);
  });

  it('prints error objects: CniErrors as they are, ConfigErrors as code 7, anything else as an I/O failure (5)', () => {
    expect(errorObject(new CniError(11, 'fan not up here: x'), '1.0.0')).toEqual({ cniVersion: '1.0.0', code: 11, msg: 'fan not up here: x' });
    expect(errorObject(new CniError(100, 'full', 'why'), '0.4.0')).toEqual({ cniVersion: '0.4.0', code: 100, msg: 'full', details: 'why' });
    expect(errorObject(new ConfigError('overlay', 'x', 'bad'), '1.0.0')).toEqual({ cniVersion: '1.0.0', code: 7, msg: 'network configuration: overlay "x": bad' });
    expect(errorObject(new Error('EACCES: permission denied'), '1.0.0')).toMatchObject({ cniVersion: '1.0.0', code: 5, msg: 'userfan: EACCES: permission denied' });
  });
});

describe('userfan cni install', () => {
  it('writes a launcher that execs node on the plugin, quoting paths for the shell', () => {
    expect(launcherText('/usr/bin/node', '/opt/userfan/dist/src/cni/main.js')).toBe("#!/bin/sh\n# The userfan CNI plugin, written by `userfan cni install`: runs /opt/userfan/dist/src/cni/main.js.\nexec '/usr/bin/node' '/opt/userfan/dist/src/cni/main.js' \"$@\"\n");
    expect(launcherText("/it's/node", '/m.js')).toContain(`exec '/it'\\''s/node' '/m.js' "$@"`);
  });

  it('prints a configuration list of one userfan plugin, with only the fields given', () => {
    expect(conflist({ name: 'userfan' })).toEqual({ cniVersion: '1.0.0', name: 'userfan', plugins: [{ type: 'userfan' }] });
    expect(conflist({ name: 'fan', overlay: '250.0.0.0/8', bridge: 'fan-250-0-28', dataDir: '/srv' })).toEqual({ cniVersion: '1.0.0', name: 'fan', plugins: [{ type: 'userfan', overlay: '250.0.0.0/8', bridge: 'fan-250-0-28', dataDir: '/srv' }] });
  });
});
