// Preloaded into servers the tests start that cannot be told where to listen (kinesis-mock binds
// 0.0.0.0): every net.Server, http and https included, listens on 127.0.0.1 whatever address it
// asked for. `node --require tests/src/listen_loopback.js main.js`.
const net = require('net');

const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (args[0] !== null && typeof args[0] === 'object') {
    // listen({port, host, ...}[, cb])
    args[0] = { ...args[0], host: '127.0.0.1' };
  } else if (typeof args[1] === 'string') {
    // listen(port, host[, backlog][, cb])
    args[1] = '127.0.0.1';
  } else {
    // listen(port[, backlog][, cb])
    args.splice(1, 0, '127.0.0.1');
  }
  return listen.apply(this, args);
};
