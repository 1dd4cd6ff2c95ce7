// A TCP proxy standing in for a load balancer in the multi-host tests.
import net from 'node:net';

/** A TCP proxy whose target can be switched: what a load balancer does when a host goes away. */
export async function balancer(t: { teardown(fn: () => unknown): void }, target: number): Promise<{ port: number; to(port: number): void }> {
  let to = target;
  const socks = new Set<net.Socket>();
  const server = net.createServer((c) => {
    const up = net.connect(to, '127.0.0.1');
    socks.add(c).add(up);
    c.pipe(up).pipe(c);
    const end = () => (c.destroy(), up.destroy(), socks.delete(c), socks.delete(up));
    c.on('error', end).on('close', end);
    up.on('error', end).on('close', end);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => {
    for (const s of socks) s.destroy();
    server.close();
  });
  return { port: (server.address() as net.AddressInfo).port, to: (p) => (to = p) };
}

