/**
 * A self-signed certificate for localhost (`skiff up --tls`), made with the system's openssl.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';

/** Creates (once) a self-signed cert/key pair for localhost and 127.0.0.1 under `dir`. */
export function ensureSelfSignedCert(dir: string): { certFile: string; keyFile: string } {
  mkdirSync(dir, { recursive: true });
  const certFile = path.join(dir, 'localhost.crt');
  const keyFile = path.join(dir, 'localhost.key');
  if (existsSync(certFile) && existsSync(keyFile)) return { certFile, keyFile };
  try {
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-sha256', '-days', '365',
      '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
      '-keyout', keyFile, '-out', certFile,
    ], { stdio: 'pipe' });
  } catch (err) {
    throw new Error(`could not create a self-signed certificate with openssl (apt-get install openssl): ${(err as Error).message}`);
  }
  return { certFile, keyFile };
}
