package caddyfhirimaging.hapi;

import ca.uhn.fhir.rest.api.RestOperationTypeEnum;
import ca.uhn.fhir.rest.server.interceptor.auth.IAuthRuleTester;

import java.util.Set;

/**
 * Limits a HAPI authorization rule to some REST operations, e.g. a SMART {@code r} (read) scope without
 * {@code s} (search): HAPI's read rule covers both.
 */
record OperationTester(Set<RestOperationTypeEnum> operations) implements IAuthRuleTester {

	@Override
	public boolean matches(RuleTestRequest theRequest) {
		return operations.contains(theRequest.operation);
	}

	@Override
	public boolean matchesOutput(RuleTestRequest theRequest) {
		return operations.contains(theRequest.operation);
	}
}
