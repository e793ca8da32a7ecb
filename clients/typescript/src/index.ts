export { Client } from './client.js';
export type { ClientOptions, ClientEvents, SendOptions, RequestOptions, TLSOptions, MailboxState, TopicPosition, Job, JobHandler } from './client.js';
export { ClientCore } from './core.js';
export { SamgwError, ClientCode } from './errors.js';
export type { Message, MessageType, ErrorPayload } from './message.js';
export { FrameReader } from './framing.js';
export { signedBytes, loadSignKey, type SignKey } from './sign.js';
export { TCPClient } from './tcpclient.js';
