-- Rotate now: a new value of keysmith.dev/rotate, which keysmith acts on once (the previous key stays
-- valid for the overlap). The same as
--   kubectl annotate apikey NAME keysmith.dev/rotate=$(date -u +%Y-%m-%dT%H:%M:%SZ) --overwrite
local os = require("os")

if obj.metadata.deletionTimestamp ~= nil then
  error("the ApiKey is being deleted", 0)
end
if obj.spec ~= nil and obj.spec.disabled == true then
  error("the ApiKey is disabled: run the enable action to issue a fresh key", 0)
end

if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
local previous = obj.metadata.annotations["keysmith.dev/rotate"]
local value = os.date("!%Y-%m-%dT%H:%M:%SZ")
if value == previous then
  -- A second request within the same second still needs a value keysmith has not handled last.
  value = value .. "-2"
end
obj.metadata.annotations["keysmith.dev/rotate"] = value
return obj
