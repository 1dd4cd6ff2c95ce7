import type { PublishResult } from '../runtime/messages.js';

/**
 * A hook verdict that says "already published": returned by a hook that forwarded the message to where
 * it is sequenced (the one activation of a placed actor, src/bridge/placement.ts), so the channel actor
 * answers with that result (offset, reply) instead of publishing again. With a promise, the mailbox does
 * not wait for it (like a publish through the broker): forwarded messages leave in mailbox order and are
 * sequenced in that order where they arrive; the promise rejects with the activation's refusal.
 */
export class Published {
  constructor(readonly result: PublishResult | Promise<PublishResult>) {}
}
