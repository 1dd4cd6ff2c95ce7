/** Loader hooks (run by Node in its loader thread): see ts-loader.ts. */
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

type Ts = typeof import('typescript');
let ts: Ts | undefined;

interface LoadResult { format: string; source?: string | Uint8Array; shortCircuit?: boolean }
type NextLoad = (url: string, context: unknown) => Promise<LoadResult>;
interface ResolveResult { url: string; format?: string; shortCircuit?: boolean }
type NextResolve = (specifier: string, context: { parentURL?: string }) => Promise<ResolveResult>;

export async function resolve(specifier: string, context: { parentURL?: string }, next: NextResolve): Promise<ResolveResult> {
  try {
    return await next(specifier, context);
  } catch (err) {
    // TypeScript sources import siblings as './x.js' (or extensionless) while the file on disk is x.ts.
    const parent = context.parentURL ?? '';
    if (/\.m?ts$/.test(parent) && (specifier.startsWith('.') || specifier.startsWith('/'))) {
      for (const candidate of [specifier.replace(/\.m?js$/, '.ts'), specifier + '.ts']) {
        if (candidate === specifier) continue;
        try {
          return await next(candidate, context);
        } catch {
          /* try the next spelling */
        }
      }
    }
    throw err;
  }
}

export async function load(url: string, context: unknown, next: NextLoad): Promise<LoadResult> {
  if (!/\.m?ts$/.test(url) || !url.startsWith('file:')) return next(url, context);
  ts ??= (await import('typescript')).default as unknown as Ts;
  const file = fileURLToPath(url);
  const source = await readFile(file, 'utf8');
  const out = ts.transpileModule(source, {
    fileName: file,
    compilerOptions: {
      module: ts.ModuleKind.ESNext,
      target: ts.ScriptTarget.ES2022,
      sourceMap: false,
      inlineSourceMap: true,
      verbatimModuleSyntax: false,
    },
  });
  return { format: 'module', source: out.outputText, shortCircuit: true };
}
