-- Enable: set spec.disabled back to false; keysmith issues a fresh key (revoked keys never come back).
-- The same as
--   kubectl patch apikey NAME --type merge -p '{"spec":{"disabled":false}}'
if obj.spec == nil then
  obj.spec = {}
end
obj.spec.disabled = false
return obj
