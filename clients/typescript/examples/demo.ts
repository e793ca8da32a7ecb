// The prototype's client demo on the samgw client: connect, send data, ping
// at 5 s, send again at 10 s, disconnect at 30 s.
//
//   npm run demo                              # against samgw serve on 127.0.0.1:4000
//   SAMGW_TIME_SCALE=0.01 npm run demo        # the 30 s in 0.3 s
//   SAMGW_ADDR=host:port SAMGW_TOKEN=… npm run demo
import { TCPClient } from '../src/index.js';

const [host, port] = (process.env.SAMGW_ADDR ?? '127.0.0.1:4000').split(':');
const scale = Number(process.env.SAMGW_TIME_SCALE ?? '1');
const at = (ms: number, fn: () => void) => setTimeout(fn, ms * scale);

const client = new TCPClient(host!, Number(port), 30_000, 10_000, { token: process.env.SAMGW_TOKEN });
client.connect();
client.send({ name: 'John', age: 30, email: 'john@example.com' });
at(5_000, () => client.ping());
at(10_000, () => client.send({ message: 'Hello again!', timestamp: Date.now() }));
at(30_000, () => {
  console.log('Disconnecting after 30 seconds...');
  client.disconnect();
});
