// roles.js — who may do what in a community, as the server's permission table
// (server/domain/permissions.py) says. The client only hides or disables
// controls with it; the server decides, and a refusal still shows as an error.

/** Roles, lowest first. */
export const ROLES = ['guest', 'member', 'facilitator', 'admin', 'owner'];
export const rank = (role) => ROLES.indexOf(role);

/** The least role that has each permission the web client uses. */
const LEAST_ROLE = {
  read: 'guest',
  participate: 'guest',
  post: 'member',
  pin_messages: 'facilitator',
  delete_messages: 'facilitator',
  manage_channels: 'facilitator',
  manage_threads: 'facilitator',
  create_invites: 'facilitator',
  time_out_members: 'facilitator',
  run_workshops: 'facilitator',
  read_participation: 'facilitator',
  kick_members: 'admin',
  ban_members: 'admin',
  set_roles: 'admin',
};

/** Whether `role` has `permission`. */
export const can = (role, permission) => rank(role) >= rank(LEAST_ROLE[permission]);

/** Whether a member with `actor` role may use `permission` on one with `target` role. */
export function canActOn(actor, target, permission) {
  if (!can(actor, permission) || rank(target) < 0) return false;
  if (target === 'owner' && (permission === 'kick_members' || permission === 'ban_members')) {
    return false;
  }
  return actor === 'owner' || rank(target) < rank(actor);
}

/** The roles `actor` may give a member who has `target` now (their own role excluded). */
export function grantable(actor, target) {
  if (!canActOn(actor, target, 'set_roles')) return [];
  const top = actor === 'owner' ? ROLES.length : rank('admin');
  return ROLES.slice(0, top).filter((role) => role !== target);
}

/** "Facilitators", for group headings. */
export const plural = (role) => `${role[0].toUpperCase()}${role.slice(1)}s`;
