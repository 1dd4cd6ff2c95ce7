// A Redis that answers but refuses rt-actors at start, or is not what the options say (a Cluster, a
// Sentinel), is named as such, with what to change: the start said "cannot reach Redis … Start Redis"
// for a wrong password or database, as if Redis were down, and ioredis' "Failed to refresh slots cache"
// or "unknown command 'sentinel'" for a plain Redis given as a Cluster or a Sentinel.
import t from 'tap';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer as createNetServer, type AddressInfo, type Server as NetServer } from 'node:net';
import { freePort, redisCall, startHost, startRedis } from './helpers/redis.js';

const redis = await startRedis(t, { args: ['--databases', '4'] });
// Set once it runs: the helper's readiness check speaks without a password.
await redisCall(redis.port, 'CONFIG', 'SET', 'requirepass', 'right-password');
const at = `127.0.0.1:${redis.port}`;

t.test('no password, a wrong one, a database Redis does not have', async (t) => {
  const cases: Array<[string, string, RegExp]> = [
    ['no password', `redis://${at}`, /rt-actors: Redis at redis:\/\/[^ ]+ refused our credentials \(NOAUTH[^)]*\): give the password in --redis \(redis:\/\/:password@host:port, or redis:\/\/user:password@host:port\)\n/],
    ['a wrong password', `redis://:wrong@${at}`, /rt-actors: Redis at redis:\/\/[^ ]+ refused our credentials \(WRONGPASS[^)]*\)/],
    ['a database it does not have', `redis://:right-password@${at}/9`, /rt-actors: Redis at redis:\/\/[^ ]+ has no database 9 \(ERR DB index is out of range\): its 'databases' setting/],
  ];
  await Promise.all(cases.map(async ([name, url, expected]) => {
    const err: Error = await startHost(t, url, 'rt').then(() => new Error('started'), (e: Error) => e);
    t.match(err.message, /host exited \(2\)/, `${name}: exit code 2`);
    t.match(err.message, expected, `${name}: says what is wrong`);
    t.notMatch(err.message, /cannot reach|Start Redis/, `${name}: does not say Redis is down`);
  }));
});

t.test('a plain Redis given as a Cluster or as a Sentinel', async (t) => {
  const plain = await startRedis(t);
  const node = `127.0.0.1:${plain.port}`;
  const cases: Array<[string, string, string[], RegExp]> = [
    ['--redis-cluster', `redis://${node}`, ['--redis-cluster'], /rt-actors: Redis at redis:\/\/[^ ]+ is not a Redis Cluster \(cluster_enabled:0\): leave out --redis-cluster and give one URL/],
    ['two URLs', `redis://${node},redis://${node}`, [], /rt-actors: Redis at redis:\/\/[^ ]+ is not a Redis Cluster \(cluster_enabled:0\): leave out --redis-cluster and give one URL \(several URLs in --redis mean a Cluster's nodes\)/],
    ['--redis-sentinels', `redis://${node}`, ['--redis-sentinels', node], /rt-actors: sentinels 127\.0\.0\.1:\d+ \(master mymaster\): an address in --redis-sentinels is a plain Redis, not a Sentinel \(it does not know the SENTINEL command\): give the sentinels' addresses \(port 26379 by default\)/],
  ];
  await Promise.all(cases.map(async ([name, url, args, expected]) => {
    const err: Error = await startHost(t, url, 'rt', { args }).then(() => new Error('started'), (e: Error) => e);
    t.match(err.message, /host exited \(2\)/, `${name}: exit code 2`);
    t.match(err.message, expected, `${name}: says what is wrong`);
    t.notMatch(err.message, /slots cache|Start Redis/, `${name}: not the driver's words`);
  }));
});

// Options in a query, as other Redis clients take them, were ignored: `?db=3` ran on database 0, apart
// from the hosts given /3, and `?password=` started as if no password were needed.
t.test('options in a query of --redis are refused, not ignored', async (t) => {
  const cases: Array<[string, string, RegExp]> = [
    ['?db=3', `redis://:right-password@${at}/?db=3`, /rt-actors: --redis: redis:\/\/127\.0\.0\.1:\d+ has a query \(db\), which rt-actors does not read: give the database as the path \(redis:\/\/host:port\/3\)/],
    ['?password=', `redis://${at}?password=right-password`, /rt-actors: --redis: redis:\/\/127\.0\.0\.1:\d+ has a query \(password\), which rt-actors does not read: .*credentials before the host/],
    ['an unencoded # in a password', `redis://:right-password#1@${at}`, /rt-actors: --redis: "redis:\/\/…@127\.0\.0\.1:\d+" is not a Redis URL \(.*'#' as %23/],
    // decodeURIComponent's URIError escaped: exit 1, "unexpected error", and a stack.
    ['an unencoded % in a password', `redis://:right%password@${at}`, /rt-actors: --redis: the user name or password in "redis:\/\/…@127\.0\.0\.1:\d+" has a '%' that is not a percent-escape: write '%' as %25\n/],
  ];
  await Promise.all(cases.map(async ([name, url, expected]) => {
    const err: Error = await startHost(t, url, 'rt').then(() => new Error('started'), (e: Error) => e);
    t.match(err.message, /host exited \(2\)/, `${name}: exit code 2`);
    t.match(err.message, expected, `${name}: says what is wrong`);
    t.notMatch(err.message, /right-password/, `${name}: the password is not printed`);
  }));
});

// A wrong port that some other server listens on got the driver's "Protocol error, got "H" as reply type
// byte. Please report this." and "Start Redis", or "cannot reach Redis" for a server that stays silent.
t.test('an address where something other than Redis listens', async (t) => {
  const web = createHttpServer((_req, res) => res.end('hello'));
  const silent = createNetServer(() => {});
  const listen = (s: HttpServer | NetServer) => new Promise<number>((r) => s.listen(0, '127.0.0.1', () => r((s.address() as AddressInfo).port)));
  const [webPort, silentPort] = [await listen(web), await listen(silent)];
  t.teardown(() => {
    web.closeAllConnections();
    web.close();
    silent.close();
  });
  const cases: Array<[string, string, RegExp]> = [
    ['an HTTP server', `redis://127.0.0.1:${webPort}`, /rt-actors: the server at redis:\/\/127\.0\.0\.1:\d+ is not a Redis: it answered with "H", as an HTTP server does, .*Check the host and port in --redis/],
    ['a server that says nothing', `redis://127.0.0.1:${silentPort}`, /rt-actors: the server at redis:\/\/127\.0\.0\.1:\d+ took the connection but did not answer as Redis \(no answer within \d+ ms\): it is not a Redis, expects TLS \(rediss:\/\/\)/],

    // This file's Redis has no TLS: the driver only said "connect ETIMEDOUT … Start Redis".
    ['a Redis without TLS given as rediss://', `rediss://127.0.0.1:${redis.port}`, /rt-actors: no TLS session with Redis at rediss:\/\/127\.0\.0\.1:\d+ \(.*\): a Redis without TLS on that port never completes the handshake \(write redis:\/\/ for it\)/],
  ];
  await Promise.all(cases.map(async ([name, url, expected]) => {
    const err: Error = await startHost(t, url, 'rt').then(() => new Error('started'), (e: Error) => e);
    t.match(err.message, /host exited \(2\)/, `${name}: exit code 2`);
    t.match(err.message, expected, `${name}: says what is wrong`);
    t.notMatch(err.message, /Please report|cannot reach|Start Redis/, `${name}: neither the driver's words nor "Redis is down"`);
  }));
});

// Schemes other clients use for a Cluster or Sentinel read as a host named "redis-cluster" and a
// database "/host:port": the start said `database "/127.0.0.1:7000" must be a number`.
t.test('a scheme other than redis:// or rediss:// is named, with where a Cluster or sentinels go', async (t) => {
  const cases: Array<[string, RegExp]> = [
    [`redis-cluster://${at}`, /rt-actors: --redis: unsupported scheme redis-cluster: \(use redis:\/\/ or rediss:\/\/; a Redis Cluster is several comma-separated URLs, or one with --redis-cluster\)/],
    [`redis+sentinel://${at}`, /rt-actors: --redis: unsupported scheme redis\+sentinel: \(use redis:\/\/ or rediss:\/\/; sentinels go in --redis-sentinels\)/],
    [`redis://${at},rediss+cluster://${at}`, /rt-actors: --redis: unsupported scheme rediss\+cluster: /],
  ];
  await Promise.all(cases.map(async ([url, expected]) => {
    const err: Error = await startHost(t, url, 'rt').then(() => new Error('started'), (e: Error) => e);
    t.match(err.message, /host exited \(2\)/, `${url}: exit code 2`);
    t.match(err.message, expected, `${url}: says what is wrong`);
    t.notMatch(err.message, /database/, `${url}: not read as a database`);
  }));
});

// Every Cluster seed down said only ioredis' "Failed to refresh slots cache": neither the nodes tried nor
// that nothing listens there.
t.test('a Cluster none of whose seeds is reachable names each and why', async (t) => {
  const [a, b] = [await freePort(), await freePort()];
  const cases: Array<[string, string, string[]]> = [
    ['two URLs', `redis://127.0.0.1:${a},redis://127.0.0.1:${b}`, []],
    ['--redis-cluster', `redis://127.0.0.1:${a}`, ['--redis-cluster']],
  ];
  await Promise.all(cases.map(async ([name, url, args]) => {
    const err: Error = await startHost(t, url, 'rt', { args }).then(() => new Error('started'), (e: Error) => e);
    t.match(err.message, /host exited \(2\)/, `${name}: exit code 2`);
    t.match(err.message, new RegExp(`rt-actors: cannot reach any node of the Redis Cluster at redis://[^ ]+: 127\\.0\\.0\\.1:${a} \\(connect ECONNREFUSED 127\\.0\\.0\\.1:${a}\\)`), `${name}: names the node and the cause`);
    if (args.length === 0) t.match(err.message, new RegExp(`; 127\\.0\\.0\\.1:${b} \\(connect ECONNREFUSED 127\\.0\\.0\\.1:${b}\\)\\. Start Redis`), `${name}: and every other node tried`);
    t.notMatch(err.message, /slots cache/, `${name}: not the driver's words`);
  }));
});
