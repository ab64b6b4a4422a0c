// Reads SenML (RFC 8428) from energy meters: each resolved record is one reading. Publishes
// out.power.overvoltage when a voltage record leaves the band, and keeps the last value per name.
//   curl -H 'content-type: application/senml+json' localhost:8080/v1/ingest/power \
//     -d '[{"bn":"urn:dev:ow:10e2073a01080063:","bu":"V","n":"voltage","v":253.4},{"n":"current","u":"A","v":1.2}]'
import { defineHandler, SenmlRecord } from "outpost/handler";

const NOMINAL_V = 230;
const BAND = 0.1; // EN 50160: ±10 %

export default defineHandler({
  topic: "power",
  senml: "records",
  schema: SenmlRecord,
  async handle(record, ctx) {
    if (record.u !== "V" || record.v === undefined) {
      ctx.log.debug(`${record.n} = ${record.v ?? record.vs ?? record.vb ?? record.s} ${record.u ?? ""} at ${new Date(record.t * 1000).toISOString()}`);
      return;
    }
    if (Math.abs(record.v - NOMINAL_V) <= NOMINAL_V * BAND) return;
    await ctx.publish("power.overvoltage", { name: record.n, volts: record.v, at: record.t, sensor: ctx.sensor ?? null });
    ctx.log.warn(`${record.n}: ${record.v} V outside ${NOMINAL_V} V ±${BAND * 100} % → out.power.overvoltage`);
  },
});
