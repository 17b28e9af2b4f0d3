-- Revoke the current key (status.currentKeyID) through keysmith.dev/revoke: every verifier refuses it on
-- the next request, with or without the operator running, and keysmith writes a fresh key to the Secret
-- at once, with no overlap. The same as
--   kubectl annotate apikey NAME keysmith.dev/revoke=<current key id> --overwrite
-- A value already present is kept and the id added to it (<value>,<id>): while no operator runs, the
-- verifiers follow the annotation's current value, so replacing it could let the keys it named back in.
local MAX_LENGTH = 831 -- 64 entries of a 12-digit id and a comma, keysmith's bound on the value

if obj.metadata.deletionTimestamp ~= nil then
  error("the ApiKey is being deleted: its keys are being revoked", 0)
end
if obj.spec ~= nil and obj.spec.disabled == true then
  error("the ApiKey is disabled: every key is already revoked", 0)
end
local current = nil
if obj.status ~= nil then
  current = obj.status.currentKeyID
end
if type(current) ~= "string" or current == "" then
  error("the ApiKey has no current key yet", 0)
end

if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
local previous = obj.metadata.annotations["keysmith.dev/revoke"]
if previous == "all" then
  -- Appending would turn it into a new request for all keys, one that revokes again every key issued since.
  error("keysmith.dev/revoke is already all: every key is revoked", 0)
end
local value = current
if type(previous) == "string" and previous ~= "" and previous ~= current then
  value = previous .. "," .. current
  if #value > MAX_LENGTH then
    -- Only a long history of revocations, all handled long ago, gets this far: start a new value.
    value = current
  end
end
obj.metadata.annotations["keysmith.dev/revoke"] = value
return obj
