#!/usr/bin/env node
// Compiles src/**/*.sol with the pinned solc (package.json) into
// artifacts/<Contract>.json: {contractName, sourceName, compiler, abi,
// bytecode, deployedBytecode}. With --check it compiles and fails if the
// committed artifacts differ (CI's bytecode drift check).
'use strict';
const fs = require('fs');
const path = require('path');
const solc = require('solc');

const root = __dirname;
const srcDir = path.join(root, 'src');
const outDir = path.join(root, 'artifacts');
const check = process.argv.includes('--check');

function walk(dir) {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? walk(p) : e.name.endsWith('.sol') ? [p] : [];
  });
}

const sources = {};
for (const f of walk(srcDir).sort()) {
  sources[path.relative(root, f)] = { content: fs.readFileSync(f, 'utf8') };
}

const input = {
  language: 'Solidity',
  sources,
  settings: {
    // Cancun: the oldest EVM with transient storage, which the reentrancy
    // guard uses; every mainstream EVM chain runs it.
    evmVersion: 'cancun',
    optimizer: { enabled: true, runs: 10000 },
    // No metadata hash: the bytecode then depends only on the sources and
    // the compiler, not on file paths, so every machine builds the same.
    metadata: { bytecodeHash: 'none', appendCBOR: false },
    outputSelection: { '*': { '*': ['abi', 'evm.bytecode.object', 'evm.deployedBytecode.object'] } },
  },
};

function findImports(p) {
  for (const base of [root, path.join(root, 'node_modules')]) {
    const f = path.join(base, p);
    if (fs.existsSync(f)) return { contents: fs.readFileSync(f, 'utf8') };
  }
  return { error: `import not found: ${p}` };
}

const out = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));
const errors = (out.errors || []).filter((e) => e.severity === 'error');
// OpenZeppelin's transient-storage note is about its guard, which is safe.
for (const e of out.errors || []) if (!/Transient storage/.test(e.message)) console.error(e.formattedMessage);
if (errors.length) process.exit(1);

fs.mkdirSync(outDir, { recursive: true });
let drift = 0;
const written = new Set();
for (const [source, contracts] of Object.entries(out.contracts)) {
  if (!source.startsWith('src/')) continue; // libraries come in as imports
  for (const [name, c] of Object.entries(contracts)) {
    if (!c.evm.bytecode.object) continue; // interfaces and abstract contracts
    const art = {
      contractName: name,
      sourceName: source,
      compiler: `solc ${solc.version()}`,
      abi: c.abi,
      bytecode: '0x' + c.evm.bytecode.object,
      deployedBytecode: '0x' + c.evm.deployedBytecode.object,
    };
    const file = path.join(outDir, name + '.json');
    const text = JSON.stringify(art, null, 2) + '\n';
    written.add(name + '.json');
    if (check) {
      const old = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
      if (old !== text) {
        console.error(`artifacts/${name}.json differs from a fresh compile: run make contracts and commit`);
        drift++;
      }
    } else {
      fs.writeFileSync(file, text);
    }
  }
}
for (const f of fs.existsSync(outDir) ? fs.readdirSync(outDir) : []) {
  if (f.endsWith('.json') && !written.has(f)) {
    if (check) {
      console.error(`artifacts/${f} has no source`);
      drift++;
    } else {
      fs.unlinkSync(path.join(outDir, f));
    }
  }
}
if (drift) process.exit(1);
console.log(`${check ? 'checked' : 'wrote'} ${written.size} artifacts with solc ${solc.version()}`);
