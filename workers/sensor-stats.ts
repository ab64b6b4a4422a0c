// Keeps a running aggregate per sensor inside its isolate and publishes it every 10 readings.
import { defineHandler, v } from "outpost/handler";

const stats = new Map<string, { n: number; min: number; max: number; sum: number }>();

export default defineHandler({
  topic: "temperature",
  schema: v.object({ sensor: v.string(), celsius: v.number() }),
  async handle(reading, ctx) {
    const s = stats.get(reading.sensor) ?? { n: 0, min: Infinity, max: -Infinity, sum: 0 };
    s.n++;
    s.sum += reading.celsius;
    s.min = Math.min(s.min, reading.celsius);
    s.max = Math.max(s.max, reading.celsius);
    stats.set(reading.sensor, s);
    const mean = Math.round((s.sum / s.n) * 100) / 100;
    ctx.log(`${reading.sensor}: n=${s.n} mean=${mean} min=${s.min} max=${s.max}`);
    if (s.n % 10 === 0) {
      await ctx.publish(`stats.${reading.sensor}`, { sensor: reading.sensor, n: s.n, mean, min: s.min, max: s.max });
    }
  },
});
