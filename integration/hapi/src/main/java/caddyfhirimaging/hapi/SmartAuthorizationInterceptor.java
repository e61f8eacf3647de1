package caddyfhirimaging.hapi;

import ca.uhn.fhir.rest.api.RestOperationTypeEnum;
import ca.uhn.fhir.rest.api.server.RequestDetails;
import ca.uhn.fhir.rest.server.interceptor.auth.AuthorizationInterceptor;
import ca.uhn.fhir.rest.server.interceptor.auth.IAuthRule;
import ca.uhn.fhir.rest.server.interceptor.auth.IAuthRuleBuilderRuleOp;
import ca.uhn.fhir.rest.server.interceptor.auth.IAuthRuleBuilderRuleOpClassifier;
import ca.uhn.fhir.rest.server.interceptor.auth.IAuthRuleBuilderRuleOpClassifierFinished;
import ca.uhn.fhir.rest.server.interceptor.auth.PolicyEnum;
import ca.uhn.fhir.rest.server.interceptor.auth.RuleBuilder;
import org.hl7.fhir.r4.model.IdType;

import java.util.EnumSet;
import java.util.List;
import java.util.Set;

import static ca.uhn.fhir.rest.api.RestOperationTypeEnum.GET_PAGE;
import static ca.uhn.fhir.rest.api.RestOperationTypeEnum.HISTORY_INSTANCE;
import static ca.uhn.fhir.rest.api.RestOperationTypeEnum.HISTORY_SYSTEM;
import static ca.uhn.fhir.rest.api.RestOperationTypeEnum.HISTORY_TYPE;
import static ca.uhn.fhir.rest.api.RestOperationTypeEnum.PATCH;
import static ca.uhn.fhir.rest.api.RestOperationTypeEnum.READ;
import static ca.uhn.fhir.rest.api.RestOperationTypeEnum.SEARCH_SYSTEM;
import static ca.uhn.fhir.rest.api.RestOperationTypeEnum.SEARCH_TYPE;
import static ca.uhn.fhir.rest.api.RestOperationTypeEnum.TRANSACTION;
import static ca.uhn.fhir.rest.api.RestOperationTypeEnum.UPDATE;
import static ca.uhn.fhir.rest.api.RestOperationTypeEnum.VREAD;

/**
 * HAPI's {@link AuthorizationInterceptor} with rules derived from the SMART scopes of the request's bearer
 * token (see {@link BearerTokens}); anything no rule allows is denied (403).
 * <ul>
 * <li>{@code GET /metadata} needs no token; any other request without an active token is a 401.</li>
 * <li>{@code patient/} scopes apply inside the compartment of the token's {@code patient} (for type Patient:
 * that Patient itself) and grant nothing without a {@code patient}; {@code user/} and {@code system/} scopes
 * apply to every resource of the type ({@code *}: of all types).</li>
 * <li>{@code r} allows read, vread and instance history; {@code s} search, paging and type/system history;
 * {@code c} create; {@code u} update and patch; {@code d} delete.</li>
 * <li>Any read permission on ImagingStudy also allows reading Endpoints (not in the Patient compartment;
 * they hold no patient data), so {@code _include=ImagingStudy:endpoint} works.</li>
 * <li>Transactions and batches are allowed; each entry goes through the same rules.</li>
 * </ul>
 */
public class SmartAuthorizationInterceptor extends AuthorizationInterceptor {
	private static final Set<RestOperationTypeEnum> READ_OPS = EnumSet.of(READ, VREAD, HISTORY_INSTANCE);
	private static final Set<RestOperationTypeEnum> SEARCH_OPS =
			EnumSet.of(SEARCH_TYPE, SEARCH_SYSTEM, GET_PAGE, HISTORY_TYPE, HISTORY_SYSTEM);

	private final BearerTokens myTokens;

	SmartAuthorizationInterceptor(BearerTokens theTokens) {
		super(PolicyEnum.DENY);
		myTokens = theTokens;
	}

	@Override
	public List<IAuthRule> buildRuleList(RequestDetails theRequest) {
		RuleBuilder rules = new RuleBuilder();
		rules.allow("metadata").metadata();
		if (theRequest.getRestOperationType() == RestOperationTypeEnum.METADATA) {
			return rules.build();
		}
		TokenInfo token = myTokens.require(theRequest); // 401 without an active token

		rules.allow("transaction/batch").transaction().withAnyOperation().andApplyNormalRules();
		// HAPI checks a search entry's searchset inside a batch/transaction response through the resources it
		// holds; an empty one holds none and would be denied as a "Bundle" resource.
		rules.allow("searchsets in batch/transaction responses")
				.read()
				.resourcesOfType("Bundle")
				.withAnyId()
				.withTester(new OperationTester(EnumSet.of(TRANSACTION)));
		StringBuilder imagingStudyRead = new StringBuilder();
		for (SmartScope scope : token.smartScopes()) {
			IdType patient = null;
			if (scope.isPatientContext()) {
				if (token.patient() == null) {
					continue;
				}
				patient = new IdType("Patient", token.patient());
			}
			addRules(rules, scope.name(), scope.resourceType(), scope.permissions(), patient);
			if (scope.covers("ImagingStudy")) {
				imagingStudyRead.append(scope.has('r') ? "r" : "").append(scope.has('s') ? "s" : "");
			}
		}
		if (!imagingStudyRead.isEmpty()) {
			addRules(rules, "Endpoints of readable ImagingStudies", "Endpoint", imagingStudyRead.toString(), null);
		}
		return rules.build();
	}

	/** Allow rules for permissions ({@code cruds} letters) on a type ({@code *}: all), in a patient's compartment or not. */
	private static void addRules(RuleBuilder theRules, String theName, String theType, String thePerms, IdType thePatient) {
		boolean r = thePerms.indexOf('r') >= 0;
		boolean s = thePerms.indexOf('s') >= 0;
		boolean c = thePerms.indexOf('c') >= 0;
		boolean u = thePerms.indexOf('u') >= 0;
		if (r || s) {
			limit(scope(theRules.allow(theName).read(), theType, thePatient), r && s ? null : r ? READ_OPS : SEARCH_OPS);
		}
		if (c && u) {
			scope(theRules.allow(theName).write(), theType, thePatient);
		} else if (c) {
			scope(theRules.allow(theName).create(), theType, thePatient);
		} else if (u) {
			limit(scope(theRules.allow(theName).write(), theType, thePatient), EnumSet.of(UPDATE, PATCH));
		}
		if (u) {
			// HAPI cannot place a PATCH request in a compartment before loading the resource; this lets the
			// request through, and the update rules above then check the stored and the patched resource.
			theRules.allow(theName).patch().allRequests();
		}
		if (thePerms.indexOf('d') >= 0) {
			scope(theRules.allow(theName).delete(), theType, thePatient);
		}
	}

	private static IAuthRuleBuilderRuleOpClassifierFinished scope(
			IAuthRuleBuilderRuleOp theOp, String theType, IdType thePatient) {
		IAuthRuleBuilderRuleOpClassifier target =
				theType.equals("*") ? theOp.allResources() : theOp.resourcesOfType(theType);
		return thePatient == null ? target.withAnyId() : target.inCompartment("Patient", thePatient);
	}

	private static void limit(IAuthRuleBuilderRuleOpClassifierFinished theRule, Set<RestOperationTypeEnum> theOps) {
		if (theOps != null) {
			theRule.withTester(new OperationTester(theOps));
		}
	}
}
