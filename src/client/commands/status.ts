/** `ringfence status` (the daemon's GetStatus) and `ringfence doctor` (this kernel, no daemon). */
import type { CommandSpec } from './command.js';
import { doctor } from './doctor.js';
import { statusJson, statusText } from './format.js';

export const statusCommands: CommandSpec[] = [
  {
    name: 'doctor',
    synopsis: 'doctor',
    summary: "report what this kernel's AF_ALG and key retention allow this process (no daemon needed)",
    options: [],
    args: [],
    what: () => 'doctor',
    async run(ctx) {
      return doctor(ctx.json, (s) => ctx.print(s)); // through print: a failed write fails the command
    },
  },
  {
    name: 'status',
    synopsis: 'status',
    summary: "the daemon's version, kernel, suites, default suites, key count and limits",
    options: [],
    args: [],
    what: () => 'status',
    async run(ctx) {
      const client = ctx.client();
      const status = await client.getStatus();
      if (ctx.json) ctx.printJson(statusJson(status, client.socketPath));
      else ctx.print(statusText(status, client.socketPath));
      return 0;
    },
  },
];
