// A TCP proxy standing in for a load balancer in the multi-host tests.
import net from 'node:net';

export interface Balancer {
  port: number;
  /** Sends new connections to another port: what a load balancer does when a host goes away. */
  to(port: number): void;
  /** Stops passing the server's bytes to the clients of the open connections: replies are lost with them. */
  hold(): void;
  /** Drops every open connection. */
  cut(): void;
}

export async function balancer(t: { teardown(fn: () => unknown): void }, target: number): Promise<Balancer> {
  let to = target;
  const socks = new Set<net.Socket>();
  const pairs = new Set<[net.Socket, net.Socket]>();
  const server = net.createServer((c) => {
    const up = net.connect(to, '127.0.0.1');
    const pair: [net.Socket, net.Socket] = [c, up];
    socks.add(c).add(up);
    pairs.add(pair);
    c.pipe(up).pipe(c);
    const end = () => (c.destroy(), up.destroy(), socks.delete(c), socks.delete(up), pairs.delete(pair));
    c.on('error', end).on('close', end);
    up.on('error', end).on('close', end);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => {
    for (const s of socks) s.destroy();
    server.close();
  });
  return {
    port: (server.address() as net.AddressInfo).port,
    to: (p) => (to = p),
    hold: () => {
      for (const [c, up] of pairs) up.unpipe(c).pause();
    },
    cut: () => {
      for (const s of socks) s.destroy();
    },
  };
}
