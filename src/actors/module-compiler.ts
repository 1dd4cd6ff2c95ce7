/**
 * Compiles the modules of an --actors folder into plain ES modules in a private folder, once per
 * process (workers/module-compiler.ts runs it on a thread of its own; actor-modules.ts hands the
 * result to every thread). Every import specifier is rewritten to an absolute URL, resolved as Node
 * would have resolved it from the original file, so the compiled copies import what the originals
 * would have, from wherever they are; shards and compute threads then load them with Node's own
 * loader.
 *
 * Why not a loader hook (module.register), as before: each thread that registered one ran a hooks
 * thread of its own with its own TypeScript (a server with 2 shards and 3 TypeScript actors took
 * 430 MB and 3.3–4.9 s to start, against 164–173 MB and 1.6–2.1 s now: docs/benchmarks.md), and Node 20's
 * asynchronous hooks have races of their own (nodejs/node#60380 fixes some in Node 25).
 *
 * What a module keeps of its original: `import.meta.url`, `.filename` and `.dirname` name the
 * original file (import.meta itself too, destructured or passed on), and so do stack traces (a
 * sourceURL comment). What TypeScript sources may write:
 * './x.js' or './x' for a sibling x.ts. JavaScript files go through the same rewrite when they are
 * ES modules outside node_modules (a folder anywhere on disk may import 'rt-actors'); CommonJS files
 * and packages are imported as they are.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, relative, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type * as TS from 'typescript';
import { errorFrom } from './actor-modules.js';
import { fileOf, resolveSpecifier } from './resolve-specifier.js';
import { transpileWith, typescript, type Ts } from './syntax.js';

export interface CompiledModules {
  /** Original absolute path → URL of its compiled copy (or of the original, for what is not compiled). */
  urls: Record<string, string>;
  /** Original absolute path → why it does not load (its own syntax, or an import it cannot resolve). */
  errors: Record<string, { name: string; message: string }>;
  /**
   * JavaScript files TypeScript's parser refused (`file:line:column: …`): they are loaded as they are,
   * and Node's SyntaxError, if it refuses them too, names no file (describe() in folder.ts adds this).
   */
  jsSyntax?: Record<string, string>;
}

type PackageType = 'module' | 'commonjs' | undefined;

/** What the compiler must know of the options of the threads that load the copies (it runs with none). */
export interface NodeOptions {
  /** Package "exports"/"imports" conditions (nodeConditions()). */
  conditions: string[];
  /** Whether a .js file with no package "type" is an ES module when its syntax says so (detectsModuleSyntax()). */
  detectModule: boolean;
}

const TS_FILE = /\.m?ts$/;
const JS_FILE = /\.m?js$/;
/** The run-time resolver of computed import() specifiers, and its name in a compiled module. */
const DYNAMIC_IMPORT = new URL('./dynamic-import.js', import.meta.url).href;
const IMPORT_FROM = '__rtActorsImportFrom';
/**
 * This server's own build (dist/): never compiled, even inside an actors folder (`--actors .` in a
 * clone), so 'rt-actors' stays the running server's module instances.
 */
const OWN_BUILD = fileURLToPath(new URL('../../', import.meta.url));

/** `node`: the options of the thread that asked, as this one runs with none of its own. */
export async function compileModules(root: string, entries: string[], outDir: string, node: NodeOptions): Promise<CompiledModules> {
  const ts = await typescript();
  return new Compiler(ts, root, outDir, node).run(entries);
}

class Compiler {
  private readonly out: CompiledModules = { urls: {}, errors: {} };
  private readonly root: string;
  /** Files being compiled (an import cycle comes back to one of them) or done. */
  private readonly state = new Map<string, 'busy' | 'done'>();
  private readonly packageTypes = new Map<string, PackageType>();

  constructor(
    private readonly ts: Ts,
    root: string,
    private readonly outDir: string,
    private readonly node: NodeOptions,
  ) {
    this.root = realpathSync(root);
  }

  /** Files are compiled under their real path, as Node would load them (a symlinked folder, a Kubernetes volume). */
  run(entries: string[]): CompiledModules {
    for (const entry of entries) {
      const real = realpathSync(entry);
      // A CommonJS file (a .js file where package.json does not say "type": "module") loads as it is.
      if (this.compiles(real)) this.compile(real);
      else this.out.urls[real] = pathToFileURL(real).href;
      if (real === entry) continue;
      this.out.urls[entry] = this.out.urls[real]!;
      const error = this.out.errors[real];
      if (error) this.out.errors[entry] = error;
    }
    return this.out;
  }

  /** Where the compiled copy of `file` goes: the folder's own tree mirrored; anything else apart. */
  private target(file: string): string {
    if (!this.outside(file)) return join(this.outDir, relative(this.root, file) + '.mjs');
    const tag = createHash('sha256').update(file).digest('hex').slice(0, 12);
    return join(this.outDir, '_outside', `${tag}-${basename(file)}.mjs`);
  }

  /**
   * Whether `file` is compiled (else imported as it is): TypeScript wherever it is, and the folder's own
   * JavaScript ES modules. JavaScript elsewhere (packages, this server's own files, your project's
   * other modules) resolves its imports from where it is already.
   */
  private compiles(file: string): boolean {
    if (TS_FILE.test(file)) return !/\.d\.m?ts$/.test(file);
    if (!JS_FILE.test(file) || this.outside(file) || file.split(sep).includes('node_modules') || file.startsWith(OWN_BUILD)) return false;
    if (file.endsWith('.mjs')) return true;
    const type = this.packageType(dirname(file));
    return type === 'module' || (type === undefined && this.node.detectModule && this.hasModuleSyntax(file));
  }

  /**
   * Node's module syntax detection: a .js file whose package.json says no "type" (or that has none) is
   * an ES module when it has import/export or import.meta. Taken for CommonJS, such a file was loaded
   * from where it is, so its `import 'rt-actors'` (a folder anywhere on disk) and its './x.js' for
   * x.ts failed.
   */
  private hasModuleSyntax(file: string): boolean {
    try {
      return this.ts.isExternalModule(this.ts.createSourceFile(file, readFileSync(file, 'utf8'), this.ts.ScriptTarget.ES2022, false, this.ts.ScriptKind.JS));
    } catch {
      return false; // unreadable: Node says why when it imports it
    }
  }

  private outside(file: string): boolean {
    const rel = relative(this.root, file);
    return rel === '..' || rel.startsWith('..' + sep) || rel.startsWith(sep);
  }

  /** The "type" of the nearest package.json ('module' or 'commonjs'), undefined when it says none or there is none (Node's rule). */
  private packageType(dir: string): PackageType {
    if (this.packageTypes.has(dir)) return this.packageTypes.get(dir);
    let type: PackageType = 'commonjs';
    try {
      const said = (JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { type?: unknown }).type;
      type = said === 'module' || said === 'commonjs' ? said : undefined;
    } catch (err) {
      const parent = dirname(dir);
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') type = parent === dir ? undefined : this.packageType(parent);
    }
    this.packageTypes.set(dir, type);
    return type;
  }

  /**
   * Compiles `file` and, first, the modules it imports. Returns the error that keeps it from loading:
   * its own, or that of a module it imports statically (whose importers then fail the same way).
   */
  private compile(file: string): Error | undefined {
    const state = this.state.get(file);
    if (state === 'busy') return undefined; // an import cycle: the module is already on the way
    if (state === 'done') return this.errorOf(file);
    this.state.set(file, 'busy');
    const target = this.target(file);
    this.out.urls[file] = pathToFileURL(target).href;
    let error: Error | undefined;
    let code: string;
    try {
      const source = readFileSync(file, 'utf8');
      let depError: Error | undefined;
      const rewrite = (specifier: string, dynamic: boolean): string => {
        const to = this.resolve(specifier, file, dynamic);
        if (to.compile) {
          const e = this.compile(to.compile);
          if (e && !dynamic) depError ??= e;
        }
        return to.url;
      };
      try {
        // The source map names the original (with source maps on, stack traces give its lines).
        code = transpileWith(this.ts, file, source, { before: [this.refuseCommonJs(file)], after: [this.rewriter(file, rewrite)] }, pathToFileURL(dirname(file)).href + '/');
      } catch (err) {
        // Node's own SyntaxError for a JavaScript file (describe() in folder.ts adds the position).
        if (!(err instanceof SyntaxError && JS_FILE.test(file))) throw err;
        code = source;
        (this.out.jsSyntax ??= {})[file] = err.message;
      }
      error = depError;
    } catch (err) {
      error = err as Error;
    }
    if (error) {
      this.out.errors[file] = { name: error.name, message: error.message };
      // What a dynamic import() of it gets.
      code = `throw Object.assign(new ${error.name === 'SyntaxError' ? 'SyntaxError' : 'Error'}(${JSON.stringify(error.message)}), { name: ${JSON.stringify(error.name)} });\n`;
    }
    mkdirSync(dirname(target), { recursive: true });
    writeFileSync(target, `${code!}\n//# sourceURL=${pathToFileURL(file).href}\n`);
    this.state.set(file, 'done');
    return error;
  }

  private errorOf(file: string): Error | undefined {
    const e = this.out.errors[file];
    return e && errorFrom(e);
  }

  /**
   * The URL `specifier` stands for in `parent`, and the file to compile for it. A static import that
   * resolves to nothing throws (the module could not have loaded); a dynamic one is left for Node to
   * refuse at run time.
   */
  private resolve(specifier: string, parent: string, dynamic: boolean): { url: string; compile?: string } {
    let url: string;
    try {
      ({ url } = resolveSpecifier(specifier, parent, this.node.conditions));
    } catch (err) {
      if (!dynamic) throw err;
      // Left for Node to refuse at run time, relative to the original as resolveSpecifier reads it.
      return { url: /^\.{1,2}\//.test(specifier) ? new URL(specifier, pathToFileURL(parent)).href : specifier };
    }
    if (!url.startsWith('file:')) return { url };
    const { file, suffix } = fileOf(url);
    // Whatever the specifier: a package's TypeScript (a workspace's sources), and the folder's own
    // ES modules reached through package.json "imports" ('#lib/x') as well as by a relative path.
    return this.compiles(file) ? { url: pathToFileURL(this.target(file)).href + suffix, compile: file } : { url };
  }

  /**
   * `import x = require('…')` and `export = x` are CommonJS: compiled to an ES module, TypeScript drops
   * them without a word (the import's name is then undefined at run time, the export is lost), where
   * Node's own TypeScript support refuses them. Refused here with their position, as a syntax error.
   */
  private refuseCommonJs(file: string): TS.TransformerFactory<TS.SourceFile> {
    const ts = this.ts;
    const refuse = (sf: TS.SourceFile, node: TS.Node, text: string): never => {
      const { line, character } = sf.getLineAndCharacterOfPosition(node.getStart(sf));
      throw new SyntaxError(`${file}:${line + 1}:${character + 1}: ${text}`);
    };
    return () => (sf) => {
      for (const node of sf.statements) {
        // `import type x = require('…')` is erased, as any import of types.
        if (ts.isImportEqualsDeclaration(node) && !node.isTypeOnly && ts.isExternalModuleReference(node.moduleReference)) {
          const name = node.name.text;
          refuse(sf, node, `\`import ${name} = require(…)\` is CommonJS, which an ES module cannot use: write \`import ${name} from '…'\` (or \`import * as ${name} from '…'\`)`);
        }
        if (ts.isExportAssignment(node) && node.isExportEquals) refuse(sf, node, '`export =` is CommonJS, which an ES module cannot use: write `export default`');
      }
      return sf;
    };
  }

  /**
   * The transformer that rewrites specifiers (import/export declarations and import() of a string)
   * and `import.meta.url|filename|dirname`. It runs after TypeScript's own transforms, so imports of
   * types only are already gone.
   */
  private rewriter(file: string, rewrite: (specifier: string, dynamic: boolean) => string): TS.TransformerFactory<TS.SourceFile> {
    const ts = this.ts;
    const meta: Record<string, string> = { url: pathToFileURL(file).href, filename: file, dirname: dirname(file) };
    return (ctx) => {
      const f = ctx.factory;
      const visit = (node: TS.Node): TS.Node => {
        if (ts.isImportDeclaration(node) && ts.isStringLiteral(node.moduleSpecifier)) {
          return f.updateImportDeclaration(node, node.modifiers, node.importClause, f.createStringLiteral(rewrite(node.moduleSpecifier.text, false)), node.attributes);
        }
        if (ts.isExportDeclaration(node) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
          return f.updateExportDeclaration(node, node.modifiers, node.isTypeOnly, node.exportClause, f.createStringLiteral(rewrite(node.moduleSpecifier.text, false)), node.attributes);
        }
        if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword && node.arguments[0]) {
          const [first, ...rest] = node.arguments.map((a) => ts.visitNode(a, visit) as TS.Expression);
          if (ts.isStringLiteralLike(first!)) return f.updateCallExpression(node, node.expression, node.typeArguments, [f.createStringLiteral(rewrite(first.text, true)), ...rest]);
          // Computed: resolved at run time from the original file (dynamic-import.ts).
          computed = true;
          return f.createCallExpression(f.createIdentifier(IMPORT_FROM), undefined, [first!, f.createStringLiteral(meta.url!), ...rest]);
        }
        if (ts.isPropertyAccessExpression(node) && ts.isMetaProperty(node.expression) && node.expression.keywordToken === ts.SyntaxKind.ImportKeyword && ts.isIdentifier(node.name) && node.name.text in meta) {
          return f.createStringLiteral(meta[node.name.text]!);
        }
        if (ts.isMetaProperty(node) && node.keywordToken === ts.SyntaxKind.ImportKeyword) bareMeta = true;
        return ts.visitEachChild(node, visit, ctx);
      };
      let computed = false;
      let bareMeta = false;
      return (sf) => {
        const out = ts.visitNode(sf, visit) as TS.SourceFile;
        const first: TS.Statement[] = [];
        if (computed) {
          first.push(
            f.createImportDeclaration(
              undefined,
              f.createImportClause(false, undefined, f.createNamedImports([f.createImportSpecifier(false, f.createIdentifier('importFrom'), f.createIdentifier(IMPORT_FROM))])),
              f.createStringLiteral(DYNAMIC_IMPORT),
            ),
          );
        }
        // `import.meta` itself (`const { dirname } = import.meta`, passed to a function) is the copy's:
        // its properties are set to the original's before the module's own code runs.
        if (bareMeta) {
          const props = Object.entries(meta).map(([k, v]) => f.createPropertyAssignment(k, f.createStringLiteral(v)));
          const assign = f.createCallExpression(f.createPropertyAccessExpression(f.createIdentifier('Object'), 'assign'), undefined, [f.createMetaProperty(ts.SyntaxKind.ImportKeyword, f.createIdentifier('meta')), f.createObjectLiteralExpression(props)]);
          first.push(f.createExpressionStatement(assign));
        }
        return first.length ? f.updateSourceFile(out, [...first, ...out.statements]) : out;
      };
    };
  }
}
