// A self-signed certificate for localhost, made with the openssl command, in a fresh temporary folder.
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export function selfSignedCert(): { dir: string; key: string; cert: string } {
  const dir = mkdtempSync(join(tmpdir(), 'rt-tls-'));
  const key = join(dir, 'key.pem');
  const cert = join(dir, 'cert.pem');
  try {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost'], { stdio: 'ignore' });
  } catch {
    throw new Error('this test needs the openssl command (apt-get install openssl)');
  }
  return { dir, key, cert };
}
