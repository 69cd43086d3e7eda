package provision

import (
	"cmp"
	"encoding/base64"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/silofl/silo"
)

// ARM API versions the template uses: recent, generally available ones.
const (
	armStorageAPI   = "2023-01-01"
	armIdentityAPI  = "2023-01-31"
	armRoleAPI      = "2022-04-01"
	armACIAPI       = "2023-05-01"
	armDeployAPI    = "2022-09-01"
	armSchema       = "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#"
	blobContributor = "ba92f5b4-2d11-453d-a403-e96b0029c9fe" // built-in role: Storage Blob Data Contributor
	acrPull         = "7f951dda-4ed3-4680-a7ca-43fe172d538d" // built-in role: AcrPull
)

// ARM expressions used in several places.
const (
	armStorageID  = "resourceId('Microsoft.Storage/storageAccounts', parameters('storageAccountName'))"
	armIdentityID = "resourceId('Microsoft.ManagedIdentity/userAssignedIdentities', variables('identityName'))"
	armIdentity   = "reference(" + armIdentityID + ", '" + armIdentityAPI + "')"
)

func azureBundle(spec *silo.RunnerSpec, cfg BootstrapConfig) ([]File, error) {
	storage, err := StoragePath(spec, cfg.Workspace)
	if err != nil {
		return nil, err
	}
	rc := runnerConfig(spec, cfg, storage)
	rc.HTTPSProxy = "" // SPEC §2 has no egress proxy for azure runners
	tmpl := armTemplate(spec, cfg, rc)
	data, err := marshal(tmpl)
	if err != nil {
		return nil, err
	}
	conf, err := marshal(rc)
	if err != nil {
		return nil, err
	}
	info := readmeData(spec, cfg, rc)
	info.Account = AzureStorageAccount(spec.Name)
	info.MemoryGB = aciMemoryGB(rc.MemoryMB)
	info.Registry, _ = acrRegistry(spec.ContainerRegistryURL)
	readme, err := renderReadme(azureReadme, info)
	if err != nil {
		return nil, err
	}
	return []File{
		{Name: ARMTemplateFile, Data: data},
		{Name: RunnerConfigFile, Data: conf},
		{Name: ReadmeFile, Data: readme},
	}, nil
}

// aciMemoryGB converts MiB to the GB Azure Container Instances takes, in
// its 0.1 GB steps, rounding down so the runner never gets more than its spec.
func aciMemoryGB(mb int) float64 {
	return math.Floor(float64(mb)/1024*10) / 10
}

// acrRegistry splits "<registry>.azurecr.io/<image>" into the registry's
// login server and name.
func acrRegistry(image string) (name, server string) {
	server, _, _ = strings.Cut(strings.TrimPrefix(image, "https://"), "/")
	name, _, _ = strings.Cut(server, ".")
	return name, server
}

func expr(s string) string { return "[" + s + "]" }

// armTemplate returns the ARM template of an azure runner: its storage
// account and blob container, a managed identity with access to them, and
// an Azure Container Instances group running the runner container.
func armTemplate(spec *silo.RunnerSpec, cfg BootstrapConfig, rc RunnerConfig) obj {
	tags := obj{"silo-runner": spec.Name, "silo-workspace": cfg.Workspace}
	image := cfg.Image
	if spec.ContainerRegistryURL != "" {
		image = spec.ContainerRegistryURL
	}
	params := obj{
		"runnerToken": obj{"type": "securestring", "minLength": 1, "metadata": obj{
			"description": "The runner's token, shown once when the runner was registered (or its token replaced). Azure never shows or logs it.",
		}},
		"location": obj{"type": "string", "defaultValue": cmp.Or(spec.Region, "[resourceGroup().location]"),
			"metadata": obj{"description": "The runner's region."}},
		"storageAccountName": obj{"type": "string", "defaultValue": AzureStorageAccount(spec.Name), "minLength": 3, "maxLength": 24,
			"metadata": obj{"description": "The runner's storage account; Silo derives and expects this name."}},
		"containerImage": obj{"type": "string", "defaultValue": image,
			"metadata": obj{"description": "The silo container image the runner runs."}},
		"tenantId": obj{"type": "string", "defaultValue": cmp.Or(spec.TenantID, "[subscription().tenantId]"),
			"metadata": obj{"description": "The Azure AD tenant of the runner's identity."}},
		"policyLocation": obj{"type": "string", "defaultValue": "",
			"metadata": obj{"description": "The data owner's policy the runner pins (" + EnvPolicy + "), such as azure://" + AzureContainer + "/.silo/policy.json in the runner's storage account: read once when the runner starts. Empty for none."}},
	}
	vars := obj{
		"identityName":       spec.Name + "-identity",
		"containerGroupName": spec.Name,
		"storageRoleName":    expr("guid(" + armStorageID + ", variables('identityName'), '" + blobContributor + "')"),
	}
	storageAccount := obj{
		"type": "Microsoft.Storage/storageAccounts", "apiVersion": armStorageAPI,
		"name": "[parameters('storageAccountName')]", "location": "[parameters('location')]", "tags": tags,
		"kind": "StorageV2", "sku": obj{"name": "Standard_LRS"},
		"properties": obj{
			"accessTier": "Hot", "minimumTlsVersion": "TLS1_2", "supportsHttpsTrafficOnly": true,
			"allowBlobPublicAccess": false,
		},
	}
	blobService := obj{
		"type": "Microsoft.Storage/storageAccounts/blobServices", "apiVersion": armStorageAPI,
		"name":      "[format('{0}/default', parameters('storageAccountName'))]",
		"dependsOn": []any{expr(armStorageID)},
		"properties": obj{
			"isVersioningEnabled":   true,
			"deleteRetentionPolicy": obj{"enabled": true, "days": 7},
		},
	}
	container := obj{
		"type": "Microsoft.Storage/storageAccounts/blobServices/containers", "apiVersion": armStorageAPI,
		"name":       "[format('{0}/default/" + AzureContainer + "', parameters('storageAccountName'))]",
		"dependsOn":  []any{"[resourceId('Microsoft.Storage/storageAccounts/blobServices', parameters('storageAccountName'), 'default')]"},
		"properties": obj{"publicAccess": "None"},
	}
	identity := obj{
		"type": "Microsoft.ManagedIdentity/userAssignedIdentities", "apiVersion": armIdentityAPI,
		"name": "[variables('identityName')]", "location": "[parameters('location')]", "tags": tags,
	}
	storageRole := func(name, principal string) obj {
		return obj{
			"type": "Microsoft.Authorization/roleAssignments", "apiVersion": armRoleAPI,
			"name":      name,
			"scope":     "[format('Microsoft.Storage/storageAccounts/{0}', parameters('storageAccountName'))]",
			"dependsOn": []any{expr(armStorageID), expr(armIdentityID)},
			"properties": obj{
				"roleDefinitionId": expr("subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '" + blobContributor + "')"),
				"principalId":      principal,
				"principalType":    "ServicePrincipal",
			},
		}
	}
	// Storage Blob Data Contributor lets the runner write its privacy
	// record under RunnerStateFolder in its container, besides its data.
	resources := []any{storageAccount, blobService, container, identity,
		storageRole("[variables('storageRoleName')]", expr(armIdentity+".principalId"))}
	groupDeps := []any{
		"[resourceId('Microsoft.Storage/storageAccounts/blobServices/containers', parameters('storageAccountName'), 'default', '" + AzureContainer + "')]",
		expr(armIdentityID),
		expr("extensionResourceId(" + armStorageID + ", 'Microsoft.Authorization/roleAssignments', variables('storageRoleName'))"),
	}
	if spec.RuntimeServicePrincipalID != "" {
		params["runtimeServicePrincipalId"] = obj{"type": "string", "defaultValue": spec.RuntimeServicePrincipalID,
			"metadata": obj{"description": "Object ID of the runtime service principal, granted Storage Blob Data Contributor on the runner's storage."}}
		resources = append(resources, storageRole(
			expr("guid("+armStorageID+", parameters('runtimeServicePrincipalId'), '"+blobContributor+"')"),
			"[parameters('runtimeServicePrincipalId')]"))
	}

	env := []any{
		obj{"name": EnvServer, "value": rc.ServerURL},
		obj{"name": EnvRunnerToken, "secureValue": "[parameters('runnerToken')]"},
		obj{"name": EnvStorageRoot, "value": rc.StoragePath},
		obj{"name": EnvVCPU, "value": strconv.Itoa(rc.VCPU)},
		obj{"name": EnvMemory, "value": memorySize(int(aciMemoryGB(rc.MemoryMB) * 1024))},
		obj{"name": "AZURE_CLIENT_ID", "value": expr(armIdentity + ".clientId")},
		obj{"name": "AZURE_TENANT_ID", "value": "[parameters('tenantId')]"},
		obj{"name": EnvPolicy, "value": "[parameters('policyLocation')]"},
	}
	runner := obj{
		"image": "[parameters('containerImage')]",
		"resources": obj{"requests": obj{
			"cpu":        rc.VCPU,
			"memoryInGB": aciMemoryGB(rc.MemoryMB),
		}},
	}
	group := obj{
		"osType": "Linux", "restartPolicy": "Always", "sku": "Standard",
		"containers": []any{obj{"name": "silo-runner", "properties": runner}},
	}
	if rc.CABundlePEM != "" {
		// ACI mounts files only from volumes; a secret volume keeps the
		// CA bundle out of the container group's visible properties.
		env = append(env, obj{"name": EnvCAFile, "value": "/etc/silo/ca.pem"})
		runner["volumeMounts"] = []any{obj{"name": "silo-ca", "mountPath": "/etc/silo", "readOnly": true}}
		group["volumes"] = []any{obj{"name": "silo-ca", "secret": obj{
			"ca.pem": base64.StdEncoding.EncodeToString([]byte(rc.CABundlePEM)),
		}}}
	}
	runner["environmentVariables"] = env
	if spec.ContainerRegistryURL != "" {
		registry, server := acrRegistry(spec.ContainerRegistryURL)
		params["registryResourceGroup"] = obj{"type": "string", "defaultValue": "[resourceGroup().name]",
			"metadata": obj{"description": "The resource group of the container registry " + registry + "."}}
		deployment := registry + "-acr-pull"
		resources = append(resources, obj{
			// The registry may live in another resource group, which only a
			// nested deployment can reach.
			"type": "Microsoft.Resources/deployments", "apiVersion": armDeployAPI,
			"name":          deployment,
			"resourceGroup": "[parameters('registryResourceGroup')]",
			"dependsOn":     []any{expr(armIdentityID)},
			"properties": obj{
				"mode": "Incremental",
				"template": obj{
					"$schema": armSchema, "contentVersion": "1.0.0.0",
					"resources": []any{obj{
						"type": "Microsoft.Authorization/roleAssignments", "apiVersion": armRoleAPI,
						"name":  expr("guid(subscription().id, parameters('registryResourceGroup'), '" + registry + "', variables('identityName'), '" + acrPull + "')"),
						"scope": "Microsoft.ContainerRegistry/registries/" + registry,
						"properties": obj{
							"roleDefinitionId": expr("subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '" + acrPull + "')"),
							"principalId":      expr(armIdentity + ".principalId"),
							"principalType":    "ServicePrincipal",
						},
					}},
				},
			},
		})
		groupDeps = append(groupDeps, expr("resourceId(parameters('registryResourceGroup'), 'Microsoft.Resources/deployments', '"+deployment+"')"))
		group["imageRegistryCredentials"] = []any{obj{"server": server, "identity": expr(armIdentityID)}}
	}
	if spec.SubnetID != "" {
		params["subnetId"] = obj{"type": "string", "defaultValue": spec.SubnetID,
			"metadata": obj{"description": "The subnet the container group joins (VNet injection)."}}
		group["subnetIds"] = []any{obj{"id": "[parameters('subnetId')]"}}
	}
	resources = append(resources, obj{
		"type": "Microsoft.ContainerInstance/containerGroups", "apiVersion": armACIAPI,
		"name": "[variables('containerGroupName')]", "location": "[parameters('location')]", "tags": tags,
		"identity": obj{"type": "UserAssigned", "userAssignedIdentities": obj{expr(armIdentityID): obj{}}},
		// The runner should find its storage and permissions in place.
		"dependsOn":  groupDeps,
		"properties": group,
	})

	meta := obj{
		"workspace":       cfg.Workspace,
		"runner":          spec.Name,
		"serverUrl":       cfg.ServerURL,
		"protocolVersion": cfg.ProtocolVersion,
		"storagePath":     rc.StoragePath,
	}
	for k, v := range map[string]string{
		"resourceGroup":                  spec.ResourceGroup,
		"subscriptionId":                 spec.SubscriptionID,
		"provisioningServicePrincipalId": spec.ServicePrincipalID,
	} {
		if v != "" {
			meta[k] = v
		}
	}
	return obj{
		"$schema":        armSchema,
		"contentVersion": "1.0.0.0",
		"metadata":       obj{"description": fmt.Sprintf("Silo task runner %s of workspace %s. Generated by Silo: deploy it as its README.md says.", spec.Name, cfg.Workspace), "silo": meta},
		"parameters":     params,
		"variables":      vars,
		"resources":      resources,
		"outputs": obj{
			"storageAccountName":  obj{"type": "string", "value": "[parameters('storageAccountName')]"},
			"blobEndpoint":        obj{"type": "string", "value": expr("reference(" + armStorageID + ", '" + armStorageAPI + "').primaryEndpoints.blob")},
			"identityPrincipalId": obj{"type": "string", "value": expr(armIdentity + ".principalId")},
			"containerGroupName":  obj{"type": "string", "value": "[variables('containerGroupName')]"},
		},
	}
}
