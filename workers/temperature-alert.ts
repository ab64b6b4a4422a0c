// Publishes an alert to the OUTBOX (subject out.alerts.overheat) when a sensor reads too hot.
import { defineHandler, v } from "outpost/handler";

export default defineHandler({
  topic: "temperature",
  schema: v.object({
    sensor: v.pipe(v.string(), v.minLength(1)),
    celsius: v.pipe(v.number(), v.minValue(-273.15)),
    at: v.optional(v.union([v.string(), v.number(), v.date()])),
  }),
  idField: "id",
  timeoutMs: 2_000,
  retry: { maxAttempts: 5, backoff: "exponential" },
  async handle(reading, ctx) {
    if (reading.celsius <= 80) {
      ctx.log.debug(`${reading.sensor}: ${reading.celsius} °C, fine`);
      return;
    }
    await ctx.publish("alerts.overheat", { sensor: reading.sensor, celsius: reading.celsius, seq: ctx.seq });
    ctx.log.warn(`ALERT ${reading.sensor} at ${reading.celsius} °C (reading ${ctx.id}) → out.alerts.overheat`);
  },
});
