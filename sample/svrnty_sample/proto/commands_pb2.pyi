from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AddUserCommandRequest(_message.Message):
    __slots__ = ("name", "email", "age")
    NAME_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    AGE_FIELD_NUMBER: _ClassVar[int]
    name: str
    email: str
    age: int
    def __init__(self, name: _Optional[str] = ..., email: _Optional[str] = ..., age: _Optional[int] = ...) -> None: ...

class AddUserCommandResponse(_message.Message):
    __slots__ = ("result", "workflow_id")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    result: int
    workflow_id: str
    def __init__(self, result: _Optional[int] = ..., workflow_id: _Optional[str] = ...) -> None: ...

class RemoveUserCommandRequest(_message.Message):
    __slots__ = ("user_id",)
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: int
    def __init__(self, user_id: _Optional[int] = ...) -> None: ...

class RemoveUserCommandResponse(_message.Message):
    __slots__ = ("result", "workflow_id")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    result: bool
    workflow_id: str
    def __init__(self, result: _Optional[bool] = ..., workflow_id: _Optional[str] = ...) -> None: ...

class InviteUserCommandRequest(_message.Message):
    __slots__ = ("email", "inviter")
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    INVITER_FIELD_NUMBER: _ClassVar[int]
    email: str
    inviter: str
    def __init__(self, email: _Optional[str] = ..., inviter: _Optional[str] = ...) -> None: ...

class InviteUserCommandResponse(_message.Message):
    __slots__ = ("result", "workflow_id")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    result: str
    workflow_id: str
    def __init__(self, result: _Optional[str] = ..., workflow_id: _Optional[str] = ...) -> None: ...

class AcceptInvitationCommandRequest(_message.Message):
    __slots__ = ("invitation_id", "name", "age")
    INVITATION_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    AGE_FIELD_NUMBER: _ClassVar[int]
    invitation_id: str
    name: str
    age: int
    def __init__(self, invitation_id: _Optional[str] = ..., name: _Optional[str] = ..., age: _Optional[int] = ...) -> None: ...

class AcceptInvitationCommandResponse(_message.Message):
    __slots__ = ("result", "workflow_id")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    result: int
    workflow_id: str
    def __init__(self, result: _Optional[int] = ..., workflow_id: _Optional[str] = ...) -> None: ...

class DeclineInvitationCommandRequest(_message.Message):
    __slots__ = ("invitation_id", "reason")
    INVITATION_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    invitation_id: str
    reason: str
    def __init__(self, invitation_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class DeclineInvitationCommandResponse(_message.Message):
    __slots__ = ("result", "workflow_id")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    result: bool
    workflow_id: str
    def __init__(self, result: _Optional[bool] = ..., workflow_id: _Optional[str] = ...) -> None: ...

class ExpireInvitationCommandRequest(_message.Message):
    __slots__ = ("invitation_id",)
    INVITATION_ID_FIELD_NUMBER: _ClassVar[int]
    invitation_id: str
    def __init__(self, invitation_id: _Optional[str] = ...) -> None: ...

class ExpireInvitationCommandResponse(_message.Message):
    __slots__ = ("result", "workflow_id")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    result: bool
    workflow_id: str
    def __init__(self, result: _Optional[bool] = ..., workflow_id: _Optional[str] = ...) -> None: ...

class User(_message.Message):
    __slots__ = ("id", "name", "email", "age")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    AGE_FIELD_NUMBER: _ClassVar[int]
    id: int
    name: str
    email: str
    age: int
    def __init__(self, id: _Optional[int] = ..., name: _Optional[str] = ..., email: _Optional[str] = ..., age: _Optional[int] = ...) -> None: ...

class GetUserQueryRequest(_message.Message):
    __slots__ = ("user_id",)
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: int
    def __init__(self, user_id: _Optional[int] = ...) -> None: ...

class GetUserQueryResponse(_message.Message):
    __slots__ = ("result",)
    RESULT_FIELD_NUMBER: _ClassVar[int]
    result: User
    def __init__(self, result: _Optional[_Union[User, _Mapping]] = ...) -> None: ...

class ListUsersQueryRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListUsersQueryResponse(_message.Message):
    __slots__ = ("result",)
    RESULT_FIELD_NUMBER: _ClassVar[int]
    result: _containers.RepeatedCompositeFieldContainer[User]
    def __init__(self, result: _Optional[_Iterable[_Union[User, _Mapping]]] = ...) -> None: ...
