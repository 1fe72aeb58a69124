// Preloaded (`node --require report_port.cjs server.js`) into Node servers that the tests start
// with PORT=0: once a server is bound, prints the port it got, so that the harness never picks a
// port, releases it and hands it to a child (another process could take it in between).
"use strict";
const net = require("node:net");

const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  this.once("listening", () => {
    const addr = this.address();
    if (addr && typeof addr === "object") {
      process.stderr.write(`turnpike-e2e: listening on port ${addr.port}\n`);
    }
  });
  return listen.apply(this, args);
};
