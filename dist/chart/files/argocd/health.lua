-- Argo CD health of a keysmith.dev/v1alpha1 ApiKey.
--
-- keysmith's status follows kstatus: Ready is always present once keysmith has written status,
-- Reconciling, Stalled and ExpiringSoon only while True, and status.observedGeneration and every
-- condition's observedGeneration name the generation they describe.
--
-- The script runs as Argo CD runs scripts from argocd-cm without useOpenLibs: only the base, table and
-- package libraries and a restricted os. It uses no string library. Conditions are looked up by type
-- first, so their order in the list never changes the result.

local DELETING = "The ApiKey is being deleted: keysmith revokes its keys and deletes its Secret"
local FIRST_KEY = "Waiting for keysmith to issue the first key"
local DISABLED = "spec.disabled is true: every verifier refuses this ApiKey's keys; waiting for keysmith to record the revocation and empty the Secret"

local function result(status, message)
  return { status = status, message = message }
end

local function find(conditions, kind)
  if type(conditions) ~= "table" then
    return nil
  end
  for _, c in ipairs(conditions) do
    if type(c) == "table" and c.type == kind then
      return c
    end
  end
  return nil
end

local function isTrue(c)
  return c ~= nil and c.status == "True"
end

local function text(value, fallback)
  if type(value) == "string" and value ~= "" then
    return value
  end
  return fallback
end

local metadata = obj.metadata or {}
local spec = obj.spec or {}
local status = obj.status
local conditions = nil
if type(status) == "table" then
  conditions = status.conditions
end
local ready = find(conditions, "Ready")

if metadata.deletionTimestamp ~= nil then
  if ready ~= nil and ready.reason == "Deleting" then
    return result("Progressing", text(ready.message, DELETING))
  end
  return result("Progressing", DELETING)
end

local generation = metadata.generation

-- observed reports whether a generation recorded by keysmith is the current one (an absent one says
-- nothing either way).
local function observed(recorded)
  return type(recorded) ~= "number" or type(generation) ~= "number" or recorded >= generation
end

-- The kill switch holds as soon as it is set: verifiers refuse the keys without waiting for keysmith.
if spec.disabled == true then
  if ready ~= nil and ready.reason == "Disabled" and observed(ready.observedGeneration) and observed(status.observedGeneration) then
    return result("Suspended", text(ready.message, DISABLED))
  end
  return result("Suspended", DISABLED)
end

if ready == nil then
  return result("Progressing", FIRST_KEY)
end

if not observed(status.observedGeneration) or not observed(ready.observedGeneration) then
  local seen = status.observedGeneration
  if type(seen) ~= "number" or (type(ready.observedGeneration) == "number" and ready.observedGeneration < seen) then
    seen = ready.observedGeneration
  end
  return result("Progressing", "Waiting for keysmith to act on generation " .. tostring(generation) ..
    " (status describes generation " .. tostring(seen) .. ")")
end

local stalled = find(conditions, "Stalled")
if isTrue(stalled) then
  return result("Degraded", text(stalled.message, text(ready.message, "Stalled: " .. tostring(stalled.reason))))
end

local reconciling = find(conditions, "Reconciling")
if isTrue(reconciling) then
  return result("Progressing", text(reconciling.message, text(ready.message, "keysmith is issuing a key")))
end

if ready.status == "True" then
  local expiring = find(conditions, "ExpiringSoon")
  if isTrue(expiring) then
    return result("Healthy", text(expiring.message, "The current key expires soon and no rotation will replace it before"))
  end
  return result("Healthy", text(ready.message, "The current key is active"))
end

if ready.status == "False" then
  if ready.reason == "Issuing" or ready.reason == "Deleting" then
    return result("Progressing", text(ready.message, FIRST_KEY))
  end
  if ready.reason == "Disabled" then
    -- keysmith recorded the kill switch, but the spec no longer sets it: a fresh key is on its way.
    return result("Progressing", "spec.disabled was set back to false: waiting for keysmith to issue a fresh key")
  end
  -- Every other reason needs a person: InvalidSpec, SecretConflict, SecretWriteFailed, PolicyViolation,
  -- Expired and Unused (keysmith also sets Stalled=True for these), Revoked, and any reason a newer
  -- keysmith adds: not ready, and nothing says it is making progress (that is Reconciling=True).
  return result("Degraded", text(ready.message, "Not ready: " .. tostring(ready.reason)))
end

return result("Progressing", text(ready.message, "Waiting for keysmith to report whether the key is ready"))
