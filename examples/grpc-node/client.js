// A Node.js gRPC client with no Colony code: it calls the standard health
// service of xds:///<callee> at a steady pace and prints its running totals.
// Everything Colony does reaches it through xDS, from the bootstrap that
// @grpc/grpc-js-xds reads (GRPC_XDS_BOOTSTRAP or GRPC_XDS_BOOTSTRAP_CONFIG):
// the callee's endpoints, the breaker's OPEN and HALF_OPEN as fault
// injection on the route, and the LRS server its load reports go to, which
// is how the breaker learns of its calls' outcomes.
//
//   GRPC_XDS_BOOTSTRAP=bootstrap.json node client.js --target xds:///payments
//
// Options (all optional):
//   --target xds:///payments  the channel's target
//   --tag NAME                sent as x-test-caller metadata with every call
//   --interval-ms 20          pause between calls (one call in flight at a time)
//   --timeout-ms 1000         deadline of each call
//   --report-ms 100           how often the totals are printed
//   --max-calls 100000        stop after this many calls
//   --max-duration-ms 300000  stop after this long
//
// Every --report-ms it prints one line:
//
//   totals ok=120 failed=4 rejected=37 last="UNAVAILABLE: Fault injected"
//
// where rejected counts calls the breaker turned away (the xDS fault
// filter's abort, what an OPEN breaker configures, or the sidecar's probe
// gate in HALF_OPEN, whose messages start with "colony: ") and failed every
// other error. It stops on SIGINT or
// SIGTERM too, printing its totals one last time.
'use strict';

const grpc = require('@grpc/grpc-js');
const grpcXds = require('@grpc/grpc-js-xds');

// grpc-js-xds words a call the fault filter aborted this way.
const FAULT_TEXT = 'Fault injected';
// The sidecar's probe gate words the HALF_OPEN calls it turns away so.
const GATE_TEXT = 'colony: ';

const USAGE = `usage: node client.js [--target xds:///payments] [--tag NAME] [--interval-ms 20]
       [--timeout-ms 1000] [--report-ms 100] [--max-calls 100000] [--max-duration-ms 300000]
with GRPC_XDS_BOOTSTRAP (a file) or GRPC_XDS_BOOTSTRAP_CONFIG (its JSON) set.`;

function parseArgs(argv) {
  if (argv.includes('--help') || argv.includes('-h')) {
    console.log(USAGE);
    process.exit(0);
  }
  const opts = {
    target: 'xds:///payments',
    tag: '',
    'interval-ms': 20,
    'timeout-ms': 1000,
    'report-ms': 100,
    'max-calls': 100000,
    'max-duration-ms': 300000,
  };
  for (let i = 0; i < argv.length; i++) {
    const name = argv[i].replace(/^--?/, '');
    if (!(name in opts) || i + 1 >= argv.length) {
      throw new Error(`${argv[i]}: unknown option or missing value (options: ${Object.keys(opts).map((k) => '--' + k).join(' ')})`);
    }
    const value = argv[++i];
    if (typeof opts[name] === 'number') {
      const n = Number(value);
      if (!Number.isInteger(n) || n <= 0) {
        throw new Error(`--${name} ${value}: must be a positive integer`);
      }
      opts[name] = n;
    } else {
      opts[name] = value;
    }
  }
  return opts;
}

// The health service's two messages, encoded by hand so the example needs
// no .proto file: HealthCheckRequest { string service = 1; } is sent empty
// (the server's overall health), and HealthCheckResponse { ServingStatus
// status = 1; } is one varint field.
const SERVING_STATUS = ['UNKNOWN', 'SERVING', 'NOT_SERVING', 'SERVICE_UNKNOWN'];

function decodeHealthResponse(buf) {
  let status = 0;
  for (let i = 0; i < buf.length;) {
    const key = buf[i++];
    if (key !== 0x08) {
      break; // only field 1, varint, is defined
    }
    let shift = 0;
    status = 0;
    while (i < buf.length) {
      const b = buf[i++];
      status |= (b & 0x7f) << shift;
      shift += 7;
      if ((b & 0x80) === 0) {
        break;
      }
    }
  }
  return { status: SERVING_STATUS[status] || String(status) };
}

const Health = grpc.makeGenericClientConstructor({
  Check: {
    path: '/grpc.health.v1.Health/Check',
    requestStream: false,
    responseStream: false,
    requestSerialize: () => Buffer.alloc(0),
    requestDeserialize: () => ({}),
    responseSerialize: () => Buffer.alloc(0),
    responseDeserialize: decodeHealthResponse,
  },
}, 'Health');

function main() {
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (err) {
    console.error('client.js: ' + err.message);
    process.exit(2);
  }
  if (opts.target.startsWith('xds:') && !process.env.GRPC_XDS_BOOTSTRAP && !process.env.GRPC_XDS_BOOTSTRAP_CONFIG) {
    console.error('client.js: neither GRPC_XDS_BOOTSTRAP nor GRPC_XDS_BOOTSTRAP_CONFIG is set: an xds:/// target needs a bootstrap');
    process.exit(2);
  }
  grpcXds.register(); // the xds: resolver, its balancers and HTTP filters

  const client = new Health(opts.target, grpc.credentials.createInsecure());
  const totals = { ok: 0, failed: 0, rejected: 0, last: '' };
  const print = () => console.log(`totals ok=${totals.ok} failed=${totals.failed} rejected=${totals.rejected} last=${JSON.stringify(totals.last)}`);
  const started = Date.now();
  let lastPrint = started;
  let calls = 0;
  let stopping = false;
  let timer = null;

  const stop = () => {
    if (stopping) {
      return;
    }
    stopping = true;
    clearTimeout(timer);
    print();
    client.close();
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);

  const callOnce = () => {
    if (stopping) {
      return;
    }
    if (calls >= opts['max-calls'] || Date.now() - started >= opts['max-duration-ms']) {
      stop();
      return;
    }
    calls++;
    const md = new grpc.Metadata();
    if (opts.tag) {
      md.set('x-test-caller', opts.tag);
    }
    client.Check({}, md, { deadline: Date.now() + opts['timeout-ms'] }, (err) => {
      if (stopping) {
        return; // cut short by shutdown: neither a success nor a failure
      }
      if (!err) {
        totals.ok++;
      } else {
        const details = String(err.details);
        if (err.code === grpc.status.UNAVAILABLE && (details.includes(FAULT_TEXT) || details.startsWith(GATE_TEXT))) {
          totals.rejected++;
        } else {
          totals.failed++;
        }
        totals.last = `${grpc.status[err.code]}: ${err.details}`;
      }
      if (Date.now() - lastPrint >= opts['report-ms']) {
        print();
        lastPrint = Date.now();
      }
      timer = setTimeout(callOnce, opts['interval-ms']);
    });
  };
  callOnce();
}

main();
