-- Argo CD health check for k8s-scheduler UserDeployment and UserSandbox objects.
-- Healthy: the Ready condition is True for the current generation.
-- Suspended: the Suspended condition is True (scaled to zero over the plan's limit; it says why).
-- Degraded: the Degraded condition is True (its message says why).
-- Progressing: anything else, including a status that is older than the spec.
local hs = {}
if obj.status == nil or obj.status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the k8s-scheduler controller"
  return hs
end
local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the controller to observe generation " .. tostring(generation)
  return hs
end
local ready = nil
local degraded = nil
local suspended = nil
for _, c in ipairs(obj.status.conditions) do
  if c.type == "Ready" then ready = c end
  if c.type == "Degraded" then degraded = c end
  if c.type == "Suspended" then suspended = c end
end
if suspended ~= nil and suspended.status == "True" then
  hs.status = "Suspended"
  hs.message = suspended.message or suspended.reason or "Suspended"
  return hs
end
if degraded ~= nil and degraded.status == "True" then
  hs.status = "Degraded"
  hs.message = degraded.message or degraded.reason or "Degraded"
  return hs
end
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or "Ready"
  return hs
end
hs.status = "Progressing"
if ready ~= nil and ready.message ~= nil and ready.message ~= "" then
  hs.message = ready.message
else
  hs.message = "Provisioning"
end
return hs
