-- Argo CD actions on a keysmith.dev/v1alpha1 ApiKey. Each action sets only what a person would set with
-- kubectl: the keysmith.dev/rotate or keysmith.dev/revoke annotation, or spec.disabled. An action that
-- would change nothing, or that keysmith would ignore, is shown disabled.
-- Runs without the string library (argocd-cm scripts without useOpenLibs).

local metadata = obj.metadata or {}
local spec = obj.spec or {}
local status = obj.status or {}
local annotations = metadata.annotations or {}

local deleting = metadata.deletionTimestamp ~= nil
local disabled = spec.disabled == true

-- The current key can be revoked when status lists it as Active, the annotation is not just its id, and it
-- does not already revoke every key. (Without the string library a list that names it among others cannot
-- be told apart; revoking it again there changes nothing.)
local revocable = false
local current = status.currentKeyID
local pending = annotations["keysmith.dev/revoke"]
if type(current) == "string" and current ~= "" and pending ~= current and pending ~= "all" then
  if type(status.keys) == "table" then
    for _, k in ipairs(status.keys) do
      if type(k) == "table" and k.id == current and k.state == "Active" then
        revocable = true
      end
    end
  end
end

local actions = {}
actions["rotate"] = {
  iconClass = "fa fa-fw fa-redo",
  displayName = "Rotate now",
  disabled = deleting or disabled,
}
actions["revoke"] = {
  iconClass = "fa fa-fw fa-ban",
  displayName = "Revoke current key",
  disabled = deleting or disabled or not revocable,
}
actions["disable"] = {
  iconClass = "fa fa-fw fa-pause-circle",
  displayName = "Disable (revoke every key)",
  disabled = deleting or disabled,
}
actions["enable"] = {
  iconClass = "fa fa-fw fa-play-circle",
  displayName = "Enable (issue a fresh key)",
  disabled = deleting or not disabled,
}
return actions
