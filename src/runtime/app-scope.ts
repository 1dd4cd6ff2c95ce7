/**
 * Pusher apps other than the default one live in the same hub under names that carry their app:
 * `<channel> @<app id>` and `<user id> @<app id>` (src/transports/pusher/apps.ts). The separator holds a
 * space, which no transport accepts in a channel name. The hub needs it to tell which app a channel
 * identity's user belongs to: identities keep the id the app's clients know, without the suffix.
 */
export const APP_SEPARATOR = ' @';

/**
 * Why a user id holding the separator is refused wherever one comes in (Pusher user data, a JWT's
 * `sub`, the HTTP API's `user`): the default app's user `42 @admin` would be app admin's user 42.
 */
export const USER_ID_SEPARATOR_RULE = `a user id may not contain "${APP_SEPARATOR}"`;

/** The app suffix of an internal channel name ('' for the default app's and every other transport's). */
export function appSuffixOf(channel: string): string {
  const i = channel.indexOf(APP_SEPARATOR);
  return i < 0 ? '' : channel.slice(i);
}
