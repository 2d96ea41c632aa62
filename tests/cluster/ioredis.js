// ioredis's Cluster client against the proxy, for tests/cluster.rs: node ioredis.js HOST PORT
// Writes and reads 2,000 keys with checks, a pipeline, a transaction on one hash slot, then
// prints "ok" (anything else is a failure).
const Redis = require("ioredis");

async function main() {
  const [host, port] = process.argv.slice(2);
  const cluster = new Redis.Cluster([{ host, port: Number(port) }], {
    redisOptions: { connectTimeout: 5000 },
    clusterRetryStrategy: (times) => (times > 10 ? null : 100),
  });
  for (let i = 0; i < 2000; i++) {
    await cluster.set(`io:${i}`, String(i));
  }
  for (let i = 0; i < 2000; i++) {
    const value = await cluster.get(`io:${i}`);
    if (value !== String(i)) throw new Error(`io:${i} read ${value}`);
  }
  const pipeline = await cluster.pipeline().set("{p}:a", "1").incr("{p}:a").get("{p}:a").exec();
  if (pipeline[2][1] !== "2") throw new Error(`pipeline read ${JSON.stringify(pipeline)}`);
  const tx = await cluster.multi().set("{t}:a", "x").get("{t}:a").exec();
  if (tx[1][1] !== "x") throw new Error(`transaction read ${JSON.stringify(tx)}`);
  const nodes = cluster.nodes("all").map((n) => `${n.options.host}:${n.options.port}`);
  if (nodes.some((n) => !n.startsWith("127.0.0.1:"))) throw new Error(`nodes ${nodes}`);
  await cluster.quit();
  console.log("ok");
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
