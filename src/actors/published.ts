/**
 * A hook verdict that says "already published, at this offset": returned by a hook that forwarded the
 * message to where it is sequenced (the one activation of a placed actor, src/bridge/placement.ts), so
 * the channel actor answers with the offset instead of publishing again.
 */
export class Published {
  constructor(readonly offset: number) {}
}
