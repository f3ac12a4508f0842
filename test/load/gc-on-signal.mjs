// Preloaded into the server under test (node --expose-gc --import): SIGUSR2 runs a full garbage collection, so
// memory read right after it counts what the server keeps, not what the collector has not reached yet.
process.on('SIGUSR2', () => globalThis.gc?.());
