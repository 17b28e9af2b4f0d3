-- Disable: the kill switch. Every key is revoked (reason Disabled) and the Secret's api-key emptied;
-- verifiers refuse the keys as soon as they see it. The same as
--   kubectl patch apikey NAME --type merge -p '{"spec":{"disabled":true}}'
if obj.spec == nil then
  obj.spec = {}
end
obj.spec.disabled = true
return obj
