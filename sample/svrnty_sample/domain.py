"""The sample's domain: users and invitations, their workflows, events, commands and queries.

Handlers keep their state in a :class:`Directory` (in memory, like the store). Commands and
queries are msgspec Structs whose constraints (``msgspec.Meta``) are the validation rules, so a
bad payload is refused with an error that names the field, over HTTP and gRPC alike.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar

import msgspec

from svrnty_events import Event, EventStreaming, EventStreamingHost, Workflow, hookimpl
from svrnty_events.projections import ProjectionContext

# --- field constraints ---------------------------------------------------------------------------

#: what ``\s`` matches in ECMA-262, the regex dialect of JSON Schema's ``pattern``. Python's
#: ``\s`` is another set (it adds \x1c-\x1f and \x85, and lacks \ufeff), so the patterns spell
#: the set out: the server (Python's ``re``) and any schema validator then agree on every string.
WHITESPACE = r"\t\n\v\f\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=f"[^{WHITESPACE}]",
                                   description="Display name", examples=["Ada Lovelace"])]
Email = Annotated[str, msgspec.Meta(
    max_length=254, pattern=f"^[^@{WHITESPACE}]+@[^@{WHITESPACE}]+\\.[^@{WHITESPACE}]+$",
    description="E-mail address", examples=["ada@example.com"])]
Age = Annotated[int, msgspec.Meta(ge=0, le=150, description="Age in years")]
UserId = Annotated[int, msgspec.Meta(ge=1, description="Id returned by addUser")]
InvitationId = Annotated[str, msgspec.Meta(
    min_length=1, description="Id returned by inviteUser: the invitation's workflow id",
    examples=["0b6f4c1e-8d2a-4f3b-9c5e-7a1d2e3f4a5b"])]


class Payload(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Base of commands and queries: unknown fields are refused, naming the field."""


# --- workflows -----------------------------------------------------------------------------------


class UserWorkflow(Workflow):
    """A change to the user directory. Its events go to the ``users`` stream."""


class InvitationWorkflow(Workflow):
    """One invitation, from inviteUser to acceptInvitation or declineInvitation. Its id is the
    invitation id, so every event of one invitation carries the same correlation id."""


# --- events --------------------------------------------------------------------------------------


class UserAdded(Event):
    user_id: int
    name: str
    email: str
    age: int | None = None


class UserRemoved(Event):
    user_id: int


class InvitationSent(Event):
    invitation_id: str
    email: str
    inviter: str | None = None


class InvitationAccepted(Event):
    invitation_id: str
    email: str
    user_id: int
    name: str
    age: int | None = None


class InvitationDeclined(Event):
    invitation_id: str
    email: str
    reason: str | None = None


class InvitationDue(Event):
    """Scheduled by inviteUser for when the invitation's time to accept runs out (cancelled
    when it is accepted or declined first); the invitation-expiry process manager answers it
    with expireInvitation."""

    invitation_id: str


class InvitationExpired(Event):
    invitation_id: str
    email: str


#: event types that end an invitation's workflow (a correlation-scoped subscription completes)
TERMINAL_INVITATION_EVENTS = (InvitationAccepted, InvitationDeclined, InvitationExpired)

#: the event types of each stream (the AsyncAPI document's messages per channel)
STREAM_EVENT_TYPES = {
    "users": (UserAdded, UserRemoved),
    "invitations": (InvitationSent, InvitationAccepted, InvitationDeclined, InvitationDue,
                    InvitationExpired),
}

#: default seconds an invitation may wait to be accepted (``svrnty-sample --invitation-ttl``)
DEFAULT_INVITATION_TTL = 7 * 24 * 3600.0


# --- commands and queries ------------------------------------------------------------------------


class AddUserCommand(Payload):
    """Add a user; returns the new user id."""

    name: Name
    email: Email
    age: Age | None = None


class RemoveUserCommand(Payload):
    """Remove a user."""

    user_id: UserId


class InviteUserCommand(Payload):
    """Invite someone by e-mail; returns the invitation id (the invitation's workflow id)."""

    email: Email
    inviter: Name | None = None


class AcceptInvitationCommand(Payload):
    """Accept a pending invitation, which adds the user; returns the new user id."""

    #: the field that names the workflow this command continues
    continues: ClassVar[str] = "invitation_id"

    invitation_id: InvitationId
    name: Name
    age: Age | None = None


class DeclineInvitationCommand(Payload):
    """Decline a pending invitation."""

    continues: ClassVar[str] = "invitation_id"

    invitation_id: InvitationId
    reason: Annotated[str, msgspec.Meta(max_length=500)] | None = None


class ExpireInvitationCommand(Payload):
    """Expire a pending invitation (sent by the invitation-expiry process manager when the
    invitation's time runs out); returns whether it was still pending."""

    continues: ClassVar[str] = "invitation_id"

    invitation_id: InvitationId


class GetUserQuery(Payload):
    user_id: UserId


class ListUsersQuery(Payload):
    pass


class User(msgspec.Struct, kw_only=True):
    id: int
    name: str
    email: str
    age: int | None = None


def continued_workflow(command: object) -> str | None:
    """The workflow id a command continues (its ``continues`` field), or None for a new one."""
    field_name = getattr(type(command), "continues", None)
    return getattr(command, field_name) if field_name else None


# --- state and errors ----------------------------------------------------------------------------


class NotFoundError(LookupError):
    """A user or invitation that does not exist."""


class ConflictError(Exception):
    """The command does not apply to the current state (e.g. accepting a declined invitation)."""


@dataclass
class Invitation:
    id: str
    email: str
    inviter: str | None
    status: str = "pending"  # pending | accepted | declined | expired
    #: the schedule of its InvitationDue event (cancelled on accept or decline)
    due: str | None = None


@dataclass
class Directory:
    """The handlers' state: users and invitations."""

    users: dict[int, User] = field(default_factory=dict)
    invitations: dict[str, Invitation] = field(default_factory=dict)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    def user(self, user_id: int) -> User:
        try:
            return self.users[user_id]
        except KeyError:
            raise NotFoundError(f"user {user_id} does not exist") from None

    def new_user(self, name: str, email: str, age: int | None) -> User:
        if any(u.email == email for u in self.users.values()):
            raise ConflictError(f"a user with e-mail {email} already exists")
        user = User(id=next(self._ids), name=name, email=email, age=age)
        self.users[user.id] = user
        return user

    def pending_invitation(self, invitation_id: str) -> Invitation:
        invitation = self.invitations.get(invitation_id)
        if invitation is None:
            raise NotFoundError(f"invitation {invitation_id} does not exist")
        if invitation.status != "pending":
            raise ConflictError(f"invitation {invitation_id} was already {invitation.status}")
        return invitation


# --- handlers ------------------------------------------------------------------------------------


def register_handlers(streaming: EventStreaming, directory: Directory, *,
                      invitation_ttl: float = DEFAULT_INVITATION_TTL) -> None:
    """Register the sample's command and query handlers and its process manager on
    ``streaming``. The handlers check everything before they change the directory, so a
    refused command changes nothing. An invitation not accepted or declined within
    ``invitation_ttl`` seconds is expired: inviteUser schedules InvitationDue, and the
    invitation-expiry process manager answers it with expireInvitation."""

    @streaming.command_handler(AddUserCommand, workflow=UserWorkflow)
    def add_user(command: AddUserCommand, workflow: UserWorkflow) -> int:
        """Add a user; returns the new user id."""
        user = directory.new_user(command.name, command.email, command.age)
        workflow.emit(UserAdded(user_id=user.id, name=user.name, email=user.email, age=user.age))
        return user.id

    @streaming.command_handler(RemoveUserCommand, workflow=UserWorkflow)
    def remove_user(command: RemoveUserCommand, workflow: UserWorkflow) -> bool:
        """Remove a user."""
        directory.user(command.user_id)
        del directory.users[command.user_id]
        workflow.emit(UserRemoved(user_id=command.user_id))
        return True

    @streaming.command_handler(InviteUserCommand, workflow=InvitationWorkflow)
    def invite_user(command: InviteUserCommand, workflow: InvitationWorkflow) -> str:
        """Invite someone by e-mail; returns the invitation id, which acceptInvitation and
        declineInvitation take to continue the invitation's workflow."""
        invitation = Invitation(workflow.id, command.email, command.inviter)
        workflow.emit(InvitationSent(invitation_id=workflow.id, email=command.email,
                                     inviter=command.inviter))
        invitation.due = workflow.schedule(InvitationDue(invitation_id=workflow.id),
                                           after=invitation_ttl)
        directory.invitations[workflow.id] = invitation
        return workflow.id

    @streaming.command_handler(AcceptInvitationCommand, workflow=InvitationWorkflow)
    def accept_invitation(command: AcceptInvitationCommand,
                          workflow: InvitationWorkflow) -> int:
        """Accept a pending invitation (continues its workflow): adds the user and returns the
        new user id. InvitationAccepted ends the invitation's workflow."""
        invitation = directory.pending_invitation(workflow.id)
        user = directory.new_user(command.name, invitation.email, command.age)
        invitation.status = "accepted"
        if invitation.due:
            workflow.cancel_scheduled(invitation.due)
        workflow.emit(InvitationAccepted(invitation_id=workflow.id, email=invitation.email,
                                         user_id=user.id, name=user.name, age=user.age))
        return user.id

    @streaming.command_handler(DeclineInvitationCommand, workflow=InvitationWorkflow)
    def decline_invitation(command: DeclineInvitationCommand,
                           workflow: InvitationWorkflow) -> bool:
        """Decline a pending invitation (continues its workflow). InvitationDeclined ends the
        invitation's workflow."""
        invitation = directory.pending_invitation(workflow.id)
        invitation.status = "declined"
        if invitation.due:
            workflow.cancel_scheduled(invitation.due)
        workflow.emit(InvitationDeclined(invitation_id=workflow.id, email=invitation.email,
                                         reason=command.reason))
        return True

    @streaming.command_handler(ExpireInvitationCommand, workflow=InvitationWorkflow)
    def expire_invitation(command: ExpireInvitationCommand,
                          workflow: InvitationWorkflow) -> bool:
        """Expire a pending invitation (continues its workflow); an invitation accepted or
        declined meanwhile stays as it is. InvitationExpired ends the invitation's
        workflow."""
        invitation = directory.invitations.get(workflow.id)
        if invitation is None or invitation.status != "pending":
            return False
        invitation.status = "expired"
        workflow.emit(InvitationExpired(invitation_id=workflow.id, email=invitation.email))
        return True

    @streaming.process_manager("invitation-expiry", streams=[InvitationWorkflow],
                               event_types=[InvitationDue])
    async def invitation_expiry(event: InvitationDue, pm: Any) -> None:
        """An invitation's time ran out: expire it (in its own workflow)."""
        await pm.send(ExpireInvitationCommand(invitation_id=event.invitation_id))

    # --- the read side: the queries are served by a projection of the users stream --------

    view = UsersView()
    streaming.extra_plugins.append(view)

    @streaming.projection(UsersView.PROJECTION, stream="users",
                          event_types=[UserAdded, UserRemoved])
    def project_user(event: UserAdded | UserRemoved, ctx: ProjectionContext) -> None:
        if isinstance(event, UserAdded):
            view.users[event.user_id] = User(id=event.user_id, name=event.name,
                                             email=event.email, age=event.age)
        else:
            view.users.pop(event.user_id, None)

    @project_user.on_reset
    def clear_users(_: object) -> None:
        view.users.clear()

    # an accepted invitation adds a user in the invitation's workflow (its own stream)
    @streaming.projection(UsersView.INVITED, stream="invitations",
                          event_types=[InvitationAccepted])
    def project_invited_user(event: InvitationAccepted, ctx: ProjectionContext) -> None:
        view.users[event.user_id] = User(id=event.user_id, name=event.name, email=event.email,
                                         age=event.age)

    @streaming.query_handler(GetUserQuery)
    async def get_user(query: GetUserQuery) -> User:
        """One user by id."""
        await view.caught_up()
        try:
            return view.users[query.user_id]
        except KeyError:
            raise NotFoundError(f"user {query.user_id} does not exist") from None

    @streaming.query_handler(ListUsersQuery)
    async def list_users(query: ListUsersQuery) -> list[User]:
        """Every user, by id."""
        await view.caught_up()
        return sorted(view.users.values(), key=lambda u: u.id)


class UsersView:
    """The read model the queries answer from: users by id, built by the ``users-view``
    projection from the users stream and the ``invited-users`` projection from accepted
    invitations (the directory above is the command side's state). A query first waits until
    both have read every event appended before it, so a client reads its own writes. The
    users stream's removals and the invitations' acceptances touch different users, so the
    two projections never race on one entry."""

    PROJECTION = "users-view"
    INVITED = "invited-users"

    def __init__(self) -> None:
        self.__name__ = "svrnty_sample_users_view"  # its name as a plugin
        self.users: dict[int, User] = {}
        self.host: EventStreamingHost | None = None

    @hookimpl
    def host_started(self, host: EventStreamingHost) -> None:
        self.host = host

    async def caught_up(self, timeout: float = 10.0) -> None:
        if self.host is not None:
            for name in (self.PROJECTION, self.INVITED):
                await self.host.projections.wait_caught_up(name, timeout=timeout)
