/**
 * Syntax errors of actor files as `file:line:column: message`, from TypeScript's parser: used by the
 * module compiler (which must refuse what transpileModule would "repair") and for JavaScript files,
 * whose SyntaxErrors from Node carry no position.
 */
import type { CustomTransformers } from 'typescript';

export type Ts = typeof import('typescript');
let ts: Ts | undefined;

export async function typescript(): Promise<Ts> {
  return (ts ??= (await import('typescript')).default as unknown as Ts);
}

/** Transpiles to an ES module, or throws a SyntaxError listing the first errors with their positions. */
export async function transpile(file: string, source: string): Promise<string> {
  return transpileWith(await typescript(), file, source);
}

/** transpile(), with TypeScript already loaded and transformers of the caller's (module-compiler.ts). */
export function transpileWith(t: Ts, file: string, source: string, transformers?: CustomTransformers, sourceRoot?: string): string {
  const out = t.transpileModule(source, {
    fileName: file,
    reportDiagnostics: true,
    transformers,
    compilerOptions: { module: t.ModuleKind.ESNext, target: t.ScriptTarget.ES2022, sourceMap: false, inlineSourceMap: true, sourceRoot, verbatimModuleSyntax: false, allowJs: true },
  });
  const errors = (out.diagnostics ?? []).filter((d) => d.category === t.DiagnosticCategory.Error);
  if (errors.length > 0) {
    const lines = errors.slice(0, 5).map((d) => {
      const text = t.flattenDiagnosticMessageText(d.messageText, '\n');
      if (!d.file || d.start === undefined) return `${file}: ${text}`;
      const { line, character } = d.file.getLineAndCharacterOfPosition(d.start);
      return `${file}:${line + 1}:${character + 1}: ${text} (TS${d.code})`;
    });
    throw new SyntaxError(lines.join('\n'));
  }
  return out.outputText;
}
