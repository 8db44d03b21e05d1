// A web app with Node's own http module: no dependencies to install.
'use strict';

const http = require('http');
const os = require('os');

const port = Number(process.env.PORT || 3000);
let requests = 0;

const server = http.createServer((req, res) => {
  if (req.url === '/healthz') {
    res.writeHead(200, { 'Content-Type': 'text/plain' });
    res.end('ok\n');
    return;
  }
  if (req.url !== '/') {
    res.writeHead(404, { 'Content-Type': 'text/plain' });
    res.end('not found\n');
    return;
  }
  requests++;
  res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8' });
  res.end(`Hello from Node.js ${process.version} on ${os.hostname()} (request ${requests})\n`);
});

server.listen(port, () => console.log(`listening on :${port}`));

// Stop cleanly on `dev down` / `dev stop` (SIGTERM) and Ctrl-C.
for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => server.close(() => process.exit(0)));
}
